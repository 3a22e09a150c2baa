//! The Watch stream: a task per subscriber that follows its cursor, sends
//! through a bounded buffer, ends a stream nobody reads with a status that
//! says to resume, and ends every stream with UNAVAILABLE on shutdown.
//!
//! Messages go out already encoded: a change of the projection's recent
//! window is encoded by the first watcher that sends it, and every other
//! watcher sends the same bytes, so a change costs one encoding however
//! many watch it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;
use tonic::Status;

use super::convert;
use crate::app::{App, Change, Cursor, Item};
use crate::domain::access::Principal;
use crate::pb;

/// How a watch stream behaves under load.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// Messages buffered per subscriber.
    pub buffer: usize,
    /// How long a full buffer may stay full before the stream ends.
    pub stall_timeout: Duration,
    /// How often a quiet stream gets a bookmark.
    pub bookmark_every: Duration,
    /// Streams one token may hold open at once.
    pub max_per_token: usize,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            buffer: 256,
            stall_timeout: Duration::from_secs(30),
            bookmark_every: Duration::from_secs(15),
            max_per_token: 16,
        }
    }
}

/// Counts the open watch streams of each token, to cap them.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenWatches(Arc<Mutex<HashMap<String, usize>>>);

/// One open stream of a token; dropping it closes the slot.
#[derive(Debug)]
pub(crate) struct WatchSlot {
    open: OpenWatches,
    token_id: String,
}

impl OpenWatches {
    /// Takes a slot for `token_id`, or fails when it holds `max` already.
    pub(crate) fn take(&self, token_id: &str, max: usize) -> Result<WatchSlot, Status> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(token_id.to_owned()).or_insert(0);
        if *count >= max {
            return Err(Status::resource_exhausted(format!(
                "this token has {max} watch streams open, the most it may; close one first"
            )));
        }
        *count += 1;
        Ok(WatchSlot {
            open: self.clone(),
            token_id: token_id.to_owned(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.open.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.token_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.token_id);
            }
        }
    }
}

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

/// Bytes one subscriber's queue may hold: the messages' encodings, each
/// charged [`PER_MESSAGE`] more for its place in the queue. A message
/// larger than this alone is charged all of it, and so waits for an empty
/// queue.
pub(crate) const QUEUE_BYTES: usize = 64 * 1024;
const PER_MESSAGE: usize = 64;

/// One queued message, holding its charge against the queue's bytes until
/// the transport takes it.
#[derive(Debug)]
pub(crate) struct Queued {
    message: Encoded,
    _charge: tokio::sync::OwnedSemaphorePermit,
}

/// The sending side of a subscriber's queue: at most `buffer` messages and
/// [`QUEUE_BYTES`] bytes, with one more slot for the status that ends it.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    tx: mpsc::Sender<Result<Queued, Status>>,
    bytes: Arc<tokio::sync::Semaphore>,
}

/// The stream the transport sends from; each message taken frees its
/// charge.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::Receiver<Result<Queued, Status>>,
}

impl tokio_stream::Stream for WatchStream {
    type Item = Result<Encoded, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|r| r.map(|queued| queued.message)))
    }
}

/// Returns a subscriber's queue of at most `buffer` messages.
pub(crate) fn queue(buffer: usize) -> (Sender, WatchStream) {
    // One slot more than the buffer: room for the status that ends a stall.
    let (tx, rx) = mpsc::channel(buffer.max(1) + 1);
    let bytes = Arc::new(tokio::sync::Semaphore::new(QUEUE_BYTES));
    (Sender { tx, bytes }, WatchStream { rx })
}

impl Sender {
    /// Queues the status that ends the stream; the slot kept free makes
    /// room for it.
    fn end(&self, status: Status) {
        let _ = self.tx.try_send(Err(status));
    }
}

/// Why a subscriber's task stopped sending.
enum Stop {
    /// The client went away.
    Gone,
    /// The client stopped reading: the stream was ended with a status.
    Stalled,
}

/// Queues one message, keeping one slot free for a final status, so a
/// stalled subscriber can always be told why its stream ends. Waits at most
/// the stall timeout for room (messages and bytes).
async fn send(
    tx: &Sender,
    message: Encoded,
    settings: &WatchSettings,
    app: &App,
    last: u64,
) -> Result<(), Stop> {
    let charge =
        u32::try_from((message.0.len() + PER_MESSAGE).min(QUEUE_BYTES)).unwrap_or(u32::MAX);
    let room = async {
        let charge = Arc::clone(&tx.bytes)
            .acquire_many_owned(charge)
            .await
            .map_err(|_| Stop::Gone)?;
        let permits = tx.tx.reserve_many(2).await.map_err(|_| Stop::Gone)?;
        Ok::<_, Stop>((charge, permits))
    };
    match tokio::time::timeout(settings.stall_timeout, room).await {
        Ok(Ok((charge, mut permits))) => {
            if let Some(permit) = permits.next() {
                permit.send(Ok(Queued {
                    message,
                    _charge: charge,
                }));
            }
            Ok(())
        }
        Ok(Err(stop)) => Err(stop),
        Err(_) => {
            // The reserved slot is free: this cannot fail for lack of room.
            tx.end(Status::resource_exhausted(format!(
                "the stream was not read for {}s; resume with the token of the last message processed ({})",
                settings.stall_timeout.as_secs(),
                app.token(last)
            )));
            Err(Stop::Stalled)
        }
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
fn encoded(app: &App, item: &Item, environment_id: &str) -> Option<Encoded> {
    let change = item.change(environment_id)?;
    let message = || message(app, item.position(), change);
    match item {
        Item::Shared(applied) => {
            if matches!(change, Change::EnvironmentDeleted) {
                return None;
            }
            let bytes = applied
                .encoded
                .get_or_init(|| message().map(|m| Encoded::of(&m).0).unwrap_or_default());
            Some(Encoded(bytes.clone()))
        }
        Item::Own { .. } => message().map(|m| Encoded::of(&m)),
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

/// Follows a cursor until the client leaves, stalls, the environment is
/// deleted, the caller's token is revoked, or the server shuts down.
pub(crate) async fn run(
    app: App,
    who: Principal,
    mut cursor: Cursor,
    initial: Option<Vec<Change>>,
    tx: Sender,
    settings: WatchSettings,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    // Woken when the projection applied new records: the cursor reads them
    // from its recent window.
    let mut head = app.projection().watch_applied();
    // The position of the last message sent: its token is the resume point.
    let mut last = cursor.position();
    if let Some(initial) = initial {
        let at = cursor.position();
        for m in initial.iter().filter_map(|c| message(&app, at, c)) {
            if send(&tx, Encoded::of(&m), &settings, &app, last)
                .await
                .is_err()
            {
                return;
            }
        }
        if send(&tx, bookmark(&app, at, true), &settings, &app, last)
            .await
            .is_err()
        {
            return;
        }
    }
    let mut ticker = tokio::time::interval(settings.bookmark_every);
    ticker.tick().await;
    loop {
        // Every change may be the revocation of the caller's token or the
        // deletion of its environment: nothing more is sent after either.
        if let Err(e) = app.check_still_valid(&who) {
            tx.end(Status::from(e));
            return;
        }
        // Drain everything up to the durable head.
        loop {
            let items = match cursor.next().await {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(error = %e, "watch cursor failed");
                    tx.end(Status::internal(
                        "the log could not be read; resume with your last token",
                    ));
                    return;
                }
            };
            if items.is_empty() {
                break;
            }
            // The projection has applied at least these items, so a
            // revocation before them is seen here and nothing after it goes out.
            if let Err(e) = app.check_still_valid(&who) {
                tx.end(Status::from(e));
                return;
            }
            for item in items {
                let Some(m) = encoded(&app, &item, cursor.environment_id()) else {
                    tx.end(Status::not_found(format!(
                        "environment {} was deleted",
                        cursor.environment_id()
                    )));
                    return;
                };
                match send(&tx, m, &settings, &app, last).await {
                    Ok(()) => last = item.position(),
                    Err(Stop::Gone | Stop::Stalled) => return,
                }
            }
        }
        let wake = tokio::select! {
            changed = head.changed() => Wake::Head(changed.is_ok()),
            _ = ticker.tick() => Wake::Tick,
            () = async { let _ = closing.wait_for(|c| *c).await; } => Wake::Closing,
            () = tx.tx.closed() => return,
        };
        match wake {
            Wake::Head(true) => {}
            Wake::Head(false) | Wake::Closing => {
                tx.end(unavailable(&app.token(last)));
                return;
            }
            Wake::Tick => {
                let b = bookmark(&app, cursor.position(), false);
                if send(&tx, b, &settings, &app, last).await.is_err() {
                    return;
                }
                last = cursor.position();
            }
        }
    }
}

/// What woke a quiet subscriber task.
enum Wake {
    /// The durable head moved (`false`: the log closed).
    Head(bool),
    /// Time for a bookmark.
    Tick,
    /// The server is shutting down.
    Closing,
}

fn unavailable(last: &str) -> Status {
    Status::unavailable(format!(
        "the server is shutting down; resume with the token of the last message processed ({last})"
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use secrecy::SecretString;

    use super::*;
    use crate::app::new_id;
    use crate::crypto::{Kek, KeySource};
    use crate::domain::address::RegistryKind;
    use crate::domain::command::Command;
    use crate::domain::credential::NewCredential;
    use crate::domain::event::Orchestration;
    use crate::store::{EventLog, SledStore};

    const PASSWORD: &str = "Never-In-A-Watch-7";

    async fn open(dir: &std::path::Path) -> (App, SledStore) {
        let kek = Kek::load(&KeySource::File(dir.with_extension("key")), true).unwrap();
        let store = SledStore::open(dir).unwrap();
        let app = App::open(store.log() as Arc<dyn EventLog>, store.keys(), kek, None)
            .await
            .unwrap();
        (app, store)
    }

    /// Reads the cursor up to what the projection applied.
    async fn drain(app: &App, cursor: &mut Cursor) -> Vec<Item> {
        let head = app.projection().position();
        let mut all = Vec::new();
        while cursor.position() < head {
            all.extend(cursor.next().await.unwrap());
        }
        all
    }

    #[tokio::test]
    async fn a_stalled_queue_holds_at_most_its_bytes_then_ends_with_a_status() {
        let tmp = tempfile::tempdir().unwrap();
        let (app, store) = open(&tmp.path().join("data")).await;
        let settings = WatchSettings {
            stall_timeout: Duration::from_millis(100),
            ..WatchSettings::default()
        };
        let (tx, mut rx) = queue(settings.buffer);
        let message = |n: usize| Encoded(Bytes::from(vec![b'x'; n]));
        // 6 messages of 10 KiB fit in 64 KiB (with their 64 bytes each)...
        for _ in 0..6 {
            assert!(send(&tx, message(10 * 1024), &settings, &app, 7)
                .await
                .is_ok());
        }
        assert_eq!(
            tx.bytes.available_permits(),
            QUEUE_BYTES - 6 * (10 * 1024 + PER_MESSAGE)
        );
        // ...a seventh does not: after the stall timeout the stream ends,
        // naming where to resume, with far fewer than `buffer` messages.
        let stalled = send(&tx, message(10 * 1024), &settings, &app, 7).await;
        assert!(matches!(stalled, Err(Stop::Stalled)));
        use tokio_stream::StreamExt as _;
        for _ in 0..6 {
            let taken = rx.next().await.unwrap().unwrap();
            assert_eq!(taken.0.len(), 10 * 1024);
        }
        let status = rx.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains(&app.token(7)), "{status:?}");
        // Taken by the transport, the messages no longer count.
        assert_eq!(tx.bytes.available_permits(), QUEUE_BYTES);
        // A message larger than the whole queue still goes, alone.
        assert!(send(&tx, message(100 * 1024), &settings, &app, 7)
            .await
            .is_ok());
        assert_eq!(tx.bytes.available_permits(), 0);
        drop((tx, rx));
        app.close().await;
        drop(app);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_change_is_encoded_once_for_every_watcher_and_reads_as_the_log_folds_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let (app, store) = open(&dir).await;
        let admin = Principal::system();
        let env = new_id();
        app.execute(&admin, "", &[], || Command::CreateEnvironment {
            environment_id: env.clone(),
            name: "prod".into(),
            orchestration: Some(Orchestration::Cattle),
        })
        .await
        .unwrap();
        let before = app.projection().position();
        let mut first = app.watch(&admin, &env, "", false).unwrap().cursor;
        let mut second = app.watch(&admin, &env, "", false).unwrap().cursor;
        app.execute(&admin, "", &[], || Command::CreateRegistry {
            environment_id: env.clone(),
            registry_id: new_id(),
            credential_id: new_id(),
            kind: Some(RegistryKind::Custom),
            address: "reg.example.com".into(),
            credential: NewCredential {
                email: "a@example.com".into(),
                username: "alice".into(),
                password: SecretString::from(PASSWORD.to_owned()),
                expire_time: None,
                ecr: None,
            },
            insecure: false,
            ca_certificate_pem: String::new(),
            verified: None,
        })
        .await
        .unwrap();
        app.execute(&admin, "", &[], || Command::UpdateSettings {
            default_registry: Some("reg.example.com".into()),
            whitelist: None,
        })
        .await
        .unwrap();

        let a = drain(&app, &mut first).await;
        let b = drain(&app, &mut second).await;
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a.iter().all(|i| matches!(i, Item::Shared(_))), "{a:?}");
        let shared: Vec<Encoded> = a.iter().map(|i| encoded(&app, i, &env).unwrap()).collect();
        for (i, item) in b.iter().enumerate() {
            let again = encoded(&app, item, &env).unwrap();
            assert_eq!(again, shared[i]);
            assert_eq!(
                again.0.as_ptr(),
                shared[i].0.as_ptr(),
                "the second watcher sends the first one's bytes"
            );
        }
        let decoded = pb::WatchResponse::decode(shared[0].0.clone()).unwrap();
        let Some(pb::watch_response::Event::RegistryChanged(r)) = decoded.event else {
            panic!("{decoded:?}");
        };
        assert_eq!(r.address, "reg.example.com");
        assert_eq!(r.username, "alice");
        assert_eq!(decoded.token, app.token(a[0].position()));
        assert!(!String::from_utf8_lossy(&shared[0].0).contains(PASSWORD));
        let token = app.token(before);
        drop((first, second));
        app.close().await;
        drop(app);
        store.close().await.unwrap();

        // Reopened, the window is empty: a resumed cursor folds the log
        // itself, and sends the same messages.
        let (app, store) = open(&dir).await;
        let mut resumed = app.watch(&admin, &env, &token, false).unwrap().cursor;
        let own = drain(&app, &mut resumed).await;
        assert_eq!(own.len(), 2, "{own:?}");
        for (i, item) in own.iter().enumerate() {
            assert!(matches!(item, Item::Own { .. }), "{item:?}");
            assert_eq!(encoded(&app, item, &env).unwrap(), shared[i]);
        }
        drop(resumed);
        app.close().await;
        drop(app);
        store.close().await.unwrap();
    }
}
