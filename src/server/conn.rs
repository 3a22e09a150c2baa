//! The plain TCP connection HTTP/2 writes through, made to send each flush
//! of h2 in one write.
//!
//! h2 copies a DATA frame into its write buffer only when the frame is
//! shorter than its chaining threshold: 256 bytes on a connection with
//! vectored writes, 1 KiB without. A longer frame is kept aside and written
//! after the buffer, and nothing more can be buffered until that write is
//! done, so the trailers of the same answer went out in a second write. An
//! allowed ResolvePull answer is longer than 256 bytes: on a bare
//! `TcpStream` each one took two syscalls, a third of the server's time
//! under load.
//!
//! This connection tells h2 that it has no vectored writes, so frames under
//! 1 KiB are copied and an answer with its trailers (and the other answers
//! ready at the same flush) leaves in one write. A write of at most
//! [`HOLD`] bytes is held until the next write or the flush, and the next
//! write goes out with it in one `writev`: a frame of 1 KiB or more (a large
//! CA bundle, a burst of watch messages) still leaves with its frame head in
//! one syscall. What is held is bytes h2 has handed over, as the kernel's
//! send buffer holds them; at most [`HOLD`] per connection. Vectored writes
//! (TLS records, which tonic writes as such) pass straight through.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::Connected;

/// The longest write held for the next one: h2's own write buffer is
/// 16 KiB.
pub(crate) const HOLD: usize = 16 * 1024;

/// The capacity the held buffer keeps between flushes; a larger one is
/// released once written.
const KEEP: usize = 4 * 1024;

/// A TCP connection that reports no vectored writes to HTTP/2 and sends a
/// held write with the next one. Its Debug shows how many bytes it holds,
/// never the bytes: they are answers, credentials among them.
pub(crate) struct Conn<T = TcpStream> {
    io: T,
    /// Bytes accepted but not yet written; `held[sent..]` is left.
    held: Vec<u8>,
    sent: usize,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Conn<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("io", &self.io)
            .field("held_bytes", &(self.held.len() - self.sent))
            .finish()
    }
}

impl<T> Conn<T> {
    /// Wraps an accepted connection.
    pub(crate) fn new(io: T) -> Self {
        Self {
            io,
            held: Vec::new(),
            sent: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> Conn<T> {
    /// Writes out what is held.
    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.release();
        Poll::Ready(Ok(()))
    }

    /// Empties the held buffer once all of it is written.
    fn release(&mut self) {
        self.sent = 0;
        if self.held.capacity() > KEEP {
            self.held = Vec::new();
        } else {
            self.held.clear();
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Conn<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.held.is_empty() && buf.len() <= HOLD {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        while this.sent < this.held.len() {
            let left = this.held.len() - this.sent;
            let parts = [IoSlice::new(&this.held[this.sent..]), IoSlice::new(buf)];
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &parts))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n >= left {
                this.release();
                if n > left {
                    return Poll::Ready(Ok(n - left));
                }
            } else {
                this.sent += n;
            }
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_write_held(cx))?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    /// `false`, so that h2 copies frames under 1 KiB (see the module).
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_held(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_held(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for Conn<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, IoSlice};
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tonic::transport::server::Connected as _;

    use super::{Conn, HOLD};

    /// A socket that takes at most `max` bytes per call, refuses every
    /// other call when `pend` (waking the caller at once), and counts the
    /// calls that wrote.
    #[derive(Default)]
    struct Sink {
        out: Vec<u8>,
        writes: usize,
        max: usize,
        pend: bool,
        refuse_next: bool,
    }

    impl Sink {
        fn new(max: usize, pend: bool) -> Self {
            Self {
                max,
                pend,
                ..Self::default()
            }
        }

        fn take(&mut self, cx: &mut Context<'_>, bufs: &[&[u8]]) -> Poll<io::Result<usize>> {
            if self.pend {
                self.refuse_next = !self.refuse_next;
                if self.refuse_next {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.max - n);
                self.out.extend_from_slice(&buf[..take]);
                n += take;
            }
            self.writes += 1;
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().take(cx, &[buf])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let bufs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
            self.get_mut().take(cx, &bufs)
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_buffer_and_its_flush_are_one_write() {
        let mut conn = Conn::new(Sink::new(usize::MAX, false));
        // h2's buffer: the answer's headers, its data and its trailers.
        assert_eq!(conn.write(b"headers|data|trailers").await.unwrap(), 21);
        assert_eq!(conn.io.writes, 0, "held until the flush");
        conn.flush().await.unwrap();
        assert_eq!(conn.io.writes, 1);
        assert_eq!(conn.io.out, b"headers|data|trailers");
    }

    #[tokio::test]
    async fn a_long_frame_leaves_with_the_buffer_before_it_in_one_write() {
        let mut conn = Conn::new(Sink::new(usize::MAX, false));
        let payload = vec![7u8; 4096];
        conn.write_all(b"frame head").await.unwrap();
        assert_eq!(conn.write(&payload).await.unwrap(), 4096);
        assert_eq!(conn.io.writes, 1, "head and payload in one writev");
        conn.flush().await.unwrap();
        assert_eq!(conn.io.writes, 1, "nothing left to flush");
        assert_eq!(&conn.io.out[..10], b"frame head");
        assert_eq!(&conn.io.out[10..], &payload[..]);
    }

    #[tokio::test]
    async fn short_and_refused_writes_lose_and_reorder_nothing() {
        let parts: Vec<Vec<u8>> = [1, 300, HOLD, HOLD + 1, 5, 70_000, 2]
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|b| (b * 31 + i) as u8).collect())
            .collect();
        let expected: Vec<u8> = parts.concat();
        for max in [1, 3, 7, 1000, usize::MAX] {
            for pend in [false, true] {
                let mut conn = Conn::new(Sink::new(max, pend));
                for part in &parts {
                    conn.write_all(part).await.unwrap();
                }
                let vectored = [IoSlice::new(b"tls "), IoSlice::new(b"record")];
                let mut n = 0;
                while n == 0 {
                    n = conn.write_vectored(&vectored).await.unwrap();
                }
                conn.shutdown().await.unwrap();
                let mut want = expected.clone();
                want.extend_from_slice(&b"tls record"[..n]);
                assert!(
                    conn.io.out == want,
                    "max {max}, pend {pend}: bytes lost or reordered"
                );
                assert!(conn.held.is_empty() && conn.sent == 0);
            }
        }
    }

    #[tokio::test]
    async fn debug_shows_how_much_is_held_never_the_bytes() {
        let conn = Conn {
            io: (),
            held: br#"{"password":"s3cret"}"#.to_vec(),
            sent: 2,
        };
        let shown = format!("{conn:?}");
        assert_eq!(shown, "Conn { io: (), held_bytes: 19 }");
    }

    #[tokio::test]
    async fn a_large_held_buffer_is_released_once_written() {
        let mut conn = Conn::new(Sink::new(usize::MAX, false));
        conn.write_all(&vec![1u8; HOLD]).await.unwrap();
        conn.flush().await.unwrap();
        assert_eq!(conn.held.capacity(), 0);
    }

    #[tokio::test]
    async fn h2_is_told_there_are_no_vectored_writes_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (mut conn, mut peer) = (Conn::new(accepted.unwrap().0), client.unwrap());
        // The flag h2 reads to copy frames under 1 KiB into its buffer.
        assert!(!AsyncWrite::is_write_vectored(&conn));
        conn.write_all(b"headers|data|").await.unwrap();
        conn.write_all(b"trailers").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"headers|data|trailers");
        assert_eq!(
            conn.connect_info().remote_addr(),
            peer.local_addr().ok(),
            "the peer's address reaches tonic (audit lines name it)"
        );
    }
}
