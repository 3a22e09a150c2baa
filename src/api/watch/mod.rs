//! The Watch stream. Each subscriber's stream follows its cursor when the
//! transport asks it for more, and only then: nothing is queued for a
//! client that does not read, and a stream whose client stopped reading
//! costs no CPU for the changes that follow. A sweeper ends the streams
//! nobody has read for the stall timeout (the status says to resume) and
//! gives their slots back; every stream ends with UNAVAILABLE on shutdown.
//!
//! Messages go out already encoded: a change of the projection's recent
//! window is encoded by the first watcher that sends it, and every other
//! watcher sends the same bytes, so a change costs one encoding however
//! many watch it. A stream hands the transport every message it has at
//! hand in one go, so the messages of one commit leave together.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio_stream::Stream as _;
use tonic::Status;

use super::convert;
use crate::app::{App, Change, Cursor, ItemRef};
use crate::pb;

/// How a watch stream behaves under load.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// How long a stream may go unread, with changes to send, before it
    /// ends.
    pub stall_timeout: Duration,
    /// How often a quiet stream gets a bookmark.
    pub bookmark_every: Duration,
    /// Streams one token may hold open at once.
    pub max_per_token: usize,
    /// Under a stream of writes, the most time between two wake-ups of the
    /// watchers (see [`PACE_PER_STREAM`]): a change after a quiet spell
    /// wakes them at once, the changes that follow within the pace leave
    /// together after it.
    pub pace: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(30),
            bookmark_every: Duration::from_secs(15),
            max_per_token: 16,
            pace: Duration::from_millis(20),
        }
    }
}

mod open;
#[cfg(test)]
mod tests;

pub(crate) use open::OpenWatches;
use open::Shared;

/// A `WatchResponse` already encoded, sent as it is. The server's codec
/// only ever encodes it; a client decodes the bytes as a `WatchResponse`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded(Bytes);

impl Encoded {
    fn of(message: &pb::WatchResponse) -> Self {
        Self(Bytes::from(message.encode_to_vec()))
    }
}

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded by the server; a decoder keeps nothing.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// Bytes of messages a stream takes from its cursor at a time: the
/// messages' encodings, each charged [`PER_MESSAGE`] more. It stops taking
/// once this is reached, so it holds at most this much and one message
/// more (usually bytes it shares with the projection's window). As much as
/// tonic gathers into one chunk before it hands the chunk to HTTP/2.
pub(crate) const QUEUE_BYTES: usize = 32 * 1024;
const PER_MESSAGE: usize = 64;

/// Messages taken from the cursor and not yet handed to the transport,
/// each with the position its token names; a status ends them. A shared
/// change's bytes are the projection's own, counted once more.
#[derive(Debug, Default)]
struct Batch {
    messages: VecDeque<(u64, Encoded)>,
    end: Option<Status>,
    bytes: usize,
}

impl Batch {
    /// Takes `item`'s message; returns whether there is room for more.
    fn take(&mut self, app: &App, item: ItemRef<'_>, environment_id: &str) -> bool {
        match encoded(app, item, environment_id) {
            Some(m) => {
                self.push(item.position(), m);
                self.bytes < QUEUE_BYTES
            }
            None => {
                self.end = Some(Status::not_found(format!(
                    "environment {environment_id} was deleted"
                )));
                false
            }
        }
    }

    fn push(&mut self, position: u64, m: Encoded) {
        self.bytes += m.0.len() + PER_MESSAGE;
        self.messages.push_back((position, m));
    }

    fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.end.is_none()
    }

    fn pop_message(&mut self) -> Option<(u64, Encoded)> {
        let (position, m) = self.messages.pop_front()?;
        self.bytes -= m.0.len() + PER_MESSAGE;
        Some((position, m))
    }
}

/// A read of the log under way: the cursor comes back with what it took.
type Reading = Pin<Box<dyn Future<Output = Read> + Send>>;

/// What a read of the log gives back.
struct Read {
    cursor: Cursor,
    batch: Batch,
    result: crate::app::Result<()>,
    /// Whether the cursor moved.
    moved: bool,
}

/// The stream the transport sends from.
pub struct WatchStream {
    app: App,
    /// The initial state still to send, at the position it was taken at.
    initial: Option<(u64, std::vec::IntoIter<Change>)>,
    pending: Batch,
    /// The cursor, unless a read of the log holds it.
    cursor: Option<Cursor>,
    reading: Option<Reading>,
    /// Yields when the projection applied more records.
    head: tokio_stream::wrappers::WatchStream<u64>,
    closing: tokio_stream::wrappers::WatchStream<bool>,
    ticker: tokio::time::Interval,
    shared: Arc<Shared>,
    /// How many times the transport asked for more (published in `shared`).
    polls: u64,
    done: bool,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("position", &self.shared.position.load(Ordering::Relaxed))
            .field("pending", &self.pending.messages.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        // The client went away, or the stream ended: the slot is free.
        self.shared.release_slot();
    }
}

impl WatchStream {
    fn end(&mut self, status: Status) -> Poll<Option<Result<Encoded, Status>>> {
        self.done = true;
        self.shared.release_slot();
        Poll::Ready(Some(Err(status)))
    }

    /// Takes the next messages from the initial state, then from the
    /// cursor; `Pending` while the log is read, `Ready(false)` when the
    /// cursor is at the head.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if let Some((at, initial)) = &mut self.initial {
            let at = *at;
            for change in initial.by_ref() {
                if let Some(m) = message(&self.app, at, &change) {
                    self.pending.push(at, Encoded::of(&m));
                    if self.pending.bytes >= QUEUE_BYTES {
                        return Poll::Ready(true);
                    }
                }
            }
            self.initial = None;
            self.pending.push(at, bookmark(&self.app, at, true));
            return Poll::Ready(true);
        }
        if let Some(reading) = &mut self.reading {
            let read = std::task::ready!(reading.as_mut().poll(cx));
            self.reading = None;
            self.cursor = Some(read.cursor);
            self.pending = read.batch;
            if let Err(e) = read.result {
                tracing::error!(error = %e, "watch cursor failed");
                self.pending.end = Some(Status::internal(
                    "the log could not be read; resume with your last token",
                ));
                return Poll::Ready(true);
            }
            return Poll::Ready(read.moved || !self.pending.is_empty());
        }
        let Some(mut cursor) = self.cursor.take() else {
            return Poll::Ready(false);
        };
        let env = cursor.environment_id().to_owned();
        let before = cursor.position();
        let app = &self.app;
        let pending = &mut self.pending;
        if cursor
            .next_recent(|item| pending.take(app, item, &env))
            .is_some()
        {
            let moved = cursor.position() != before;
            self.cursor = Some(cursor);
            return Poll::Ready(moved);
        }
        let app = self.app.clone();
        self.reading = Some(Box::pin(async move {
            let mut batch = Batch::default();
            let result = cursor
                .next_logged(|item| batch.take(&app, item, &env))
                .await;
            let moved = cursor.position() != before;
            Read {
                cursor,
                batch,
                result,
                moved,
            }
        }));
        self.fill(cx)
    }
}

impl tokio_stream::Stream for WatchStream {
    type Item = Result<Encoded, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        this.polls += 1;
        this.shared.polls.store(this.polls, Ordering::Relaxed);
        // The messages at hand go first, and cost no more than this.
        if let Some((position, m)) = this.pending.pop_message() {
            this.shared.last.store(position, Ordering::Relaxed);
            return Poll::Ready(Some(Ok(m)));
        }
        this.poll_more(cx)
    }
}

impl WatchStream {
    /// Nothing at hand: ends the stream, or takes more from the cursor, or
    /// waits for the head to move, a bookmark or the end.
    fn poll_more(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Encoded, Status>>> {
        if let Some(status) = self.pending.end.take() {
            return self.end(status);
        }
        if let Some(status) = self.shared.take_cut() {
            return self.end(status);
        }
        // Shutting down? (Polled until it waits, so that it wakes the stream.)
        while let Poll::Ready(Some(closing)) = Pin::new(&mut self.closing).poll_next(cx) {
            if closing {
                return self.end(unavailable(&self.resume_token()));
            }
        }
        loop {
            let moved = match self.fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(moved) => moved,
            };
            if let Some(cursor) = &self.cursor {
                self.shared
                    .position
                    .store(cursor.position(), Ordering::Release);
            }
            if moved {
                // Every change may be the revocation of the caller's token or
                // the deletion of its environment: the projection has applied
                // at least what was just read, so nothing after either goes
                // out.
                if let Err(e) = self.app.check_still_valid(&self.shared.who) {
                    return self.end(Status::from(e));
                }
                if let Some((position, m)) = self.pending.pop_message() {
                    self.shared.last.store(position, Ordering::Relaxed);
                    return Poll::Ready(Some(Ok(m)));
                }
                if let Some(status) = self.pending.end.take() {
                    return self.end(status);
                }
                continue;
            }
            // At the head: wait for it to move, for a bookmark, or for the end.
            self.shared.waiting.store(true, Ordering::Release);
            match Pin::new(&mut self.head).poll_next(cx) {
                Poll::Ready(Some(_)) => {
                    self.shared.waiting.store(false, Ordering::Release);
                    if let Err(e) = self.app.check_still_valid(&self.shared.who) {
                        return self.end(Status::from(e));
                    }
                    continue;
                }
                Poll::Ready(None) => {
                    // The log closed: the server is going away.
                    return self.end(unavailable(&self.resume_token()));
                }
                Poll::Pending => {}
            }
            if self.ticker.poll_tick(cx).is_ready() {
                self.shared.waiting.store(false, Ordering::Release);
                let at = self.shared.position.load(Ordering::Acquire);
                self.shared.last.store(at, Ordering::Relaxed);
                return Poll::Ready(Some(Ok(bookmark(&self.app, at, false))));
            }
            return Poll::Pending;
        }
    }

    /// The token of the last message handed to the transport.
    fn resume_token(&self) -> String {
        self.app.token(self.shared.last.load(Ordering::Relaxed))
    }
}

/// Returns the message of a change; `None` for the end of the environment,
/// which ends the stream instead.
fn message(app: &App, position: u64, change: &Change) -> Option<pb::WatchResponse> {
    use pb::watch_response::Event;
    let event = match change {
        Change::Registry(r) => Event::RegistryChanged(convert::registry(r)),
        Change::RegistryRemoved { id, address } => Event::RegistryRemoved(pb::RegistryRemoved {
            id: id.clone(),
            address: address.clone(),
        }),
        Change::Settings(s) => Event::SettingsChanged(convert::settings(s)),
        Change::EnvironmentDeleted => return None,
    };
    Some(pb::WatchResponse {
        token: app.token(position),
        event: Some(event),
    })
}

/// Returns an item's message for the environment, encoded (once for all
/// watchers when it is shared); `None` for the end of the environment.
fn encoded(app: &App, item: ItemRef<'_>, environment_id: &str) -> Option<Encoded> {
    let change = item.change(environment_id)?;
    let message = || message(app, item.position(), change);
    match item {
        ItemRef::Shared(applied) => {
            if matches!(change, Change::EnvironmentDeleted) {
                return None;
            }
            let bytes = applied
                .encoded
                .get_or_init(|| message().map(|m| Encoded::of(&m).0).unwrap_or_default());
            Some(Encoded(bytes.clone()))
        }
        ItemRef::Own { .. } => message().map(|m| Encoded::of(&m)),
    }
}

fn bookmark(app: &App, position: u64, initial_state_done: bool) -> Encoded {
    Encoded::of(&pb::WatchResponse {
        token: app.token(position),
        event: Some(pb::watch_response::Event::Bookmark(pb::Bookmark {
            initial_state_done,
        })),
    })
}

fn unavailable(last: &str) -> Status {
    Status::unavailable(format!(
        "the server is shutting down; resume with the token of the last message processed ({last})"
    ))
}
