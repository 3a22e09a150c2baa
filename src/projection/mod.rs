//! The read model: the fold of the log in memory, kept by one applier task
//! that follows the durable head; readers take short read locks and never
//! hold them across an await.

mod applied;
mod window;

use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::watch;

pub use applied::{watched, Applied, Audience, Change};
use window::Window;

use crate::domain::state::State;
use crate::store::{payload, EventLog, Result};

/// Records read from the log per step of the applier.
const BATCH: usize = 1024;

/// The first and the longest wait before the applier reads the log again
/// after a failed read.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_MOST: std::time::Duration = std::time::Duration::from_secs(1);

/// The recent window, shared by the applier and the watchers.
type Recent = Arc<RwLock<Window>>;

/// The shared read model.
#[derive(Debug, Clone)]
pub struct Projection {
    state: Arc<RwLock<State>>,
    applied: watch::Receiver<u64>,
    applier: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    recent: Recent,
}

impl Projection {
    /// Replays the whole log, then starts the applier task that follows it.
    pub async fn start(log: Arc<dyn EventLog>) -> Result<Self> {
        Self::start_from(log, State::default()).await
    }

    /// Folds the records after `state`'s position into it (none when it
    /// was built from the whole log as the store opened), then starts the
    /// applier task that follows the log.
    pub async fn start_from(log: Arc<dyn EventLog>, mut state: State) -> Result<Self> {
        catch_up(log.as_ref(), &mut state).await?;
        let (tx, rx) = watch::channel(state.position());
        let state = Arc::new(RwLock::new(state));
        let recent = Recent::default();
        let applier = tokio::spawn(follow(log, Arc::clone(&state), Arc::clone(&recent), tx));
        Ok(Self {
            state,
            applied: rx,
            applier: Arc::new(std::sync::Mutex::new(Some(applier))),
            recent,
        })
    }

    /// Stops the applier task, releasing its handle on the log.
    pub async fn stop(&self) {
        let task = self
            .applier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
            // A cancelled task's error is the expected outcome here.
            let _ = task.await;
        }
    }

    /// Returns a read guard on the current state. Hold it briefly and never
    /// across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while applying would leave the lock poisoned; the state
        // itself is still a consistent fold up to the last applied event.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the position of the last applied event.
    pub fn position(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Subscribes to the applied position; woken after every applied batch.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Returns up to `max` applied records from `from` on, if the recent
    /// window still holds `from` (empty when `from` is past the last one);
    /// `None` when the caller must read the log instead.
    #[cfg(test)]
    pub fn recent_from(&self, from: u64, max: usize) -> Option<Vec<Arc<Applied>>> {
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        let first = recent.records.front()?.0.recorded.position;
        if from < first {
            return None;
        }
        let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
        let records = recent.records.iter().skip(skip).take(max);
        Some(records.map(|(a, _)| Arc::clone(a)).collect())
    }

    /// Hands `visit` the recent window's changes for the watchers of
    /// `environment_id` (its own and the settings) from `from` on, in
    /// order, while it returns true (at most `max` of them), under the
    /// window's read lock. Returns the position a cursor has then passed:
    /// the last change handed over when `visit` stopped or `max` was
    /// reached, else the last applied record (the records between are no
    /// change for that environment); `None` when the window cannot tell,
    /// and the caller must read the log instead.
    pub fn visit_changes(
        &self,
        environment_id: &str,
        from: u64,
        max: usize,
        visit: impl FnMut(&Arc<Applied>) -> bool,
    ) -> Option<u64> {
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        recent.visit_changes(environment_id, from, max, visit)
    }

    /// Whether a change for the watchers of `environment_id` was applied
    /// after `position`, or the recent window cannot tell.
    pub fn changed_after(&self, environment_id: &str, position: u64) -> bool {
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        recent.changed_after(environment_id, position)
    }

    /// The environments whose watchers see a change among the applied
    /// records after `after` up to `to`; `None` when every watcher is to
    /// be woken (a change for all, a token's record, or records the recent
    /// window no longer holds).
    pub fn environments_changed(
        &self,
        after: u64,
        to: u64,
    ) -> Option<std::collections::HashSet<String>> {
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        recent.environments_changed(after, to)
    }

    /// Waits until the projection has applied `position`.
    pub async fn wait_for(&self, position: u64) {
        let mut rx = self.applied.clone();
        // An error means the applier is gone (shutdown); there is nothing to wait for.
        let _ = rx.wait_for(|p| *p >= position).await;
    }

    /// Waits until the projection holds `stream` at `version` or later: the
    /// commit that won a race on it is applied, whether or not it was
    /// durable when the race was lost.
    pub async fn wait_for_stream(&self, stream: &str, version: u64) {
        let mut rx = self.applied.clone();
        loop {
            if self.read().stream_version(stream) >= version {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Folds every record after the state's position into it.
pub async fn catch_up(log: &dyn EventLog, state: &mut State) -> Result<()> {
    loop {
        let records = log.read(state.position() + 1, BATCH).await?;
        if records.is_empty() {
            return Ok(());
        }
        for envelope in &records {
            state.apply(&payload::decode(envelope)?);
        }
    }
}

async fn follow(
    log: Arc<dyn EventLog>,
    state: Arc<RwLock<State>>,
    recent: Recent,
    applied: watch::Sender<u64>,
) {
    let mut head = log.watch_head();
    let mut backoff = RETRY_FIRST;
    loop {
        let from = *applied.borrow() + 1;
        let records = match log.read(from, BATCH).await {
            Ok(records) => {
                backoff = RETRY_FIRST;
                records
            }
            Err(e) => {
                // A shared database that went away comes back: retry, less
                // often (and less loudly) the longer it stays away.
                tracing::error!(error = %e, position = from, "projection cannot read the log");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MOST);
                continue;
            }
        };
        if records.is_empty() {
            if head.changed().await.is_err() {
                return;
            }
            continue;
        }
        let mut decoded = Vec::with_capacity(records.len());
        for envelope in &records {
            match payload::decode(envelope) {
                Ok(r) => decoded.push((r, prost::Message::encoded_len(envelope))),
                Err(e) => {
                    // Records were verified when read; an undecodable one is a
                    // bug or corruption, and serving past it would be wrong.
                    tracing::error!(error = %e, "projection stopped");
                    return;
                }
            }
        }
        let (last, noted) = {
            let mut s = state.write().unwrap_or_else(|p| p.into_inner());
            let mut noted = Vec::with_capacity(decoded.len());
            for (r, size) in decoded {
                s.apply(&r);
                // The registry as this record left it, for watchers.
                noted.push((Applied::new(r, &s), size));
            }
            (s.position(), noted)
        };
        {
            let mut window = recent.write().unwrap_or_else(|p| p.into_inner());
            for (r, size) in noted {
                window.push(r, size);
            }
        }
        applied.send_replace(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Event, Stream};
    use crate::store::{Commit, MemoryLog, StreamAppend};

    async fn append_tokens(log: &MemoryLog, n: u64) {
        append_tokens_after(log, 0, n).await;
    }

    #[tokio::test]
    async fn the_recent_window_serves_the_tail_and_sends_older_readers_to_the_log() {
        let log = Arc::new(MemoryLog::new());
        append_tokens(&log, 3).await;
        let projection = Projection::start(log.clone() as Arc<dyn EventLog>)
            .await
            .expect("start");
        // Records replayed at start are not in the window: the log serves them.
        assert!(projection.recent_from(1, 10).is_none());
        append_tokens_after(&log, 3, 5).await;
        projection.wait_for(8).await;
        let tail = projection.recent_from(6, 2).expect("in the window");
        assert_eq!(
            tail.iter().map(|r| r.recorded.position).collect::<Vec<_>>(),
            vec![6, 7]
        );
        assert!(projection
            .recent_from(9, 10)
            .expect("past the end")
            .is_empty());
        assert!(projection.recent_from(3, 10).is_none(), "before the window");
        projection.stop().await;
    }

    async fn append_tokens_after(log: &MemoryLog, from: u64, n: u64) {
        for i in from..from + n {
            let event = Event::TokenRevoked {
                token_id: format!("t{i}"),
            };
            log.append(Commit {
                appends: vec![StreamAppend {
                    stream: Stream::Tokens.name(),
                    expected_version: i,
                    events: vec![payload::encode(&event)],
                }],
                actor: "test".into(),
                request_id: String::new(),
                request_fingerprint: Vec::new(),
                time: std::time::SystemTime::now(),
                keys: Default::default(),
            })
            .await
            .expect("append");
        }
    }
}
