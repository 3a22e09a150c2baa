//! The read model: the fold of the log in memory, kept by one applier task
//! that follows the durable head; readers take short read locks and never
//! hold them across an await.

mod applied;

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::watch;

pub use applied::{watched, Applied, Audience, Change};

use crate::domain::state::State;
use crate::store::{payload, EventLog, Result};

/// Records read from the log per step of the applier.
const BATCH: usize = 1024;
/// Recent records kept decoded, with what watchers see of them, for watch
/// cursors near the head, so that many watchers do not each read, decode,
/// fold and encode every record: at most
/// this many records...
const RECENT: usize = 8192;
/// ...and at most this many bytes of them (their encoded size), whichever
/// bound is reached first, so large records (CA bundles) cannot make the
/// window hold hundreds of MiB.
const RECENT_BYTES: usize = 8 * 1024 * 1024;

/// The first and the longest wait before the applier reads the log again
/// after a failed read.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_MOST: std::time::Duration = std::time::Duration::from_secs(1);

/// The most recent applied records, contiguous by position.
type Recent = Arc<RwLock<Window>>;

/// The recent records with their sizes.
#[derive(Debug, Default)]
struct Window {
    records: VecDeque<(Arc<Applied>, usize)>,
    bytes: usize,
}

impl Window {
    fn push(&mut self, record: Applied, size: usize) {
        self.records.push_back((Arc::new(record), size));
        self.bytes += size;
        while self.records.len() > RECENT || (self.bytes > RECENT_BYTES && self.records.len() > 1) {
            if let Some((_, size)) = self.records.pop_front() {
                self.bytes -= size;
            }
        }
    }
}

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
        let mut out = Vec::new();
        self.visit_recent(from, max, |a| {
            out.push(Arc::clone(a));
            true
        })?;
        Some(out)
    }

    /// Hands the applied records from `from` on to `visit`, in order, while
    /// it returns true (at most `max` of them), if the recent window still
    /// holds `from`; `None` when the caller must read the log instead.
    /// Nothing is cloned: `visit` runs under the window's read lock.
    pub fn visit_recent(
        &self,
        from: u64,
        max: usize,
        mut visit: impl FnMut(&Arc<Applied>) -> bool,
    ) -> Option<()> {
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        let first = recent.records.front()?.0.recorded.position;
        if from < first {
            return None;
        }
        let skip = usize::try_from(from - first)
            .unwrap_or(usize::MAX)
            .min(recent.records.len());
        for (applied, _) in recent.records.range(skip..).take(max) {
            if !visit(applied) {
                break;
            }
        }
        Some(())
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
    use crate::domain::event::{Event, Recorded, Stream};
    use crate::store::{Commit, MemoryLog, StreamAppend};

    fn recorded(position: u64) -> Recorded {
        Recorded {
            position,
            stream: Stream::Tokens.name(),
            stream_version: position,
            time: std::time::SystemTime::UNIX_EPOCH,
            actor: "test".into(),
            request_id: String::new(),
            event: Event::TokenRevoked {
                token_id: format!("t{position}"),
            },
        }
    }

    #[test]
    fn the_window_is_bounded_in_bytes_as_well_as_records() {
        let mut w = Window::default();
        let big = RECENT_BYTES / 4 + 1;
        for p in 1..=10 {
            w.push(Applied::new(recorded(p), &State::default()), big);
        }
        assert_eq!(
            w.records.len(),
            3,
            "four records of a quarter would pass the bound"
        );
        assert!(w.bytes <= RECENT_BYTES);
        assert_eq!(w.records.front().unwrap().0.recorded.position, 8);
        // A record larger than the whole bound is still kept, alone.
        w.push(
            Applied::new(recorded(11), &State::default()),
            RECENT_BYTES * 2,
        );
        assert_eq!(w.records.len(), 1);
        // Small records: the record count bounds the window.
        let mut w = Window::default();
        for p in 1..=(RECENT as u64 + 5) {
            w.push(Applied::new(recorded(p), &State::default()), 10);
        }
        assert_eq!(w.records.len(), RECENT);
    }

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
