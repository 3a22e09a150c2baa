//! The Watch stream: a task per subscriber that follows its cursor, sends
//! through a bounded buffer, ends a stream nobody reads with a status that
//! says to resume, and ends every stream with UNAVAILABLE on shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;

use super::convert;
use crate::app::{App, Change, Cursor};
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

/// Sent messages; `Err` ends the stream.
pub(crate) type Sender = mpsc::Sender<Result<pb::WatchResponse, Status>>;

/// Why a subscriber's task stopped sending.
enum Stop {
    /// The client went away.
    Gone,
    /// The client stopped reading: the stream was ended with a status.
    Stalled,
}

/// Sends one message, keeping one slot free for a final status, so a stalled
/// subscriber can always be told why its stream ends.
async fn send(
    tx: &Sender,
    message: pb::WatchResponse,
    settings: &WatchSettings,
    last_token: &str,
) -> Result<(), Stop> {
    match tokio::time::timeout(settings.stall_timeout, tx.reserve_many(2)).await {
        Ok(Ok(mut permits)) => {
            if let Some(permit) = permits.next() {
                permit.send(Ok(message));
            }
            Ok(())
        }
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => {
            // The reserved slot is free: this cannot fail for lack of room.
            let _ = tx.try_send(Err(Status::resource_exhausted(format!(
                "the stream was not read for {}s; resume with the token of the last message processed ({last_token})",
                settings.stall_timeout.as_secs()
            ))));
            Err(Stop::Stalled)
        }
    }
}

/// Returns the message of a change; `None` for the end of the environment,
/// which ends the stream instead.
fn message(app: &App, position: u64, change: Change) -> Option<pb::WatchResponse> {
    use pb::watch_response::Event;
    let event = match change {
        Change::Registry(r) => Event::RegistryChanged(convert::registry(&r)),
        Change::RegistryRemoved { id, address } => {
            Event::RegistryRemoved(pb::RegistryRemoved { id, address })
        }
        Change::Settings(s) => Event::SettingsChanged(convert::settings(&s)),
        Change::EnvironmentDeleted => return None,
    };
    Some(pb::WatchResponse {
        token: app.token(position),
        event: Some(event),
    })
}

fn bookmark(app: &App, position: u64, initial_state_done: bool) -> pb::WatchResponse {
    pb::WatchResponse {
        token: app.token(position),
        event: Some(pb::watch_response::Event::Bookmark(pb::Bookmark {
            initial_state_done,
        })),
    }
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
    let mut last = app.token(cursor.position());
    if let Some(initial) = initial {
        let at = cursor.position();
        for m in initial.into_iter().filter_map(|c| message(&app, at, c)) {
            if send(&tx, m, &settings, &last).await.is_err() {
                return;
            }
        }
        if send(&tx, bookmark(&app, at, true), &settings, &last)
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
            let _ = tx.try_send(Err(Status::from(e)));
            return;
        }
        // Drain everything up to the durable head.
        loop {
            let items = match cursor.next().await {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(error = %e, "watch cursor failed");
                    let _ = tx.try_send(Err(Status::internal(
                        "the log could not be read; resume with your last token",
                    )));
                    return;
                }
            };
            if items.is_empty() {
                break;
            }
            // The projection has applied at least these items, so a
            // revocation before them is seen here and nothing after it goes out.
            if let Err(e) = app.check_still_valid(&who) {
                let _ = tx.try_send(Err(Status::from(e)));
                return;
            }
            for item in items {
                let Some(m) = message(&app, item.position, item.change) else {
                    let _ = tx.try_send(Err(Status::not_found(format!(
                        "environment {} was deleted",
                        cursor.environment_id()
                    ))));
                    return;
                };
                let token = m.token.clone();
                match send(&tx, m, &settings, &last).await {
                    Ok(()) => last = token,
                    Err(Stop::Gone | Stop::Stalled) => return,
                }
            }
        }
        let wake = tokio::select! {
            changed = head.changed() => Wake::Head(changed.is_ok()),
            _ = ticker.tick() => Wake::Tick,
            () = async { let _ = closing.wait_for(|c| *c).await; } => Wake::Closing,
            () = tx.closed() => return,
        };
        match wake {
            Wake::Head(true) => {}
            Wake::Head(false) | Wake::Closing => {
                let _ = tx.try_send(Err(unavailable(&last)));
                return;
            }
            Wake::Tick => {
                let b = bookmark(&app, cursor.position(), false);
                let token = b.token.clone();
                if send(&tx, b, &settings, &last).await.is_err() {
                    return;
                }
                last = token;
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
