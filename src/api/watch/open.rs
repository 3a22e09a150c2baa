//! The open watch streams: slots per token, the sweeper that ends the
//! streams nobody reads, and the pacer that wakes them, by environment.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tonic::Status;

use super::{Batch, WatchSettings, WatchStream};
use crate::app::{App, Change, Cursor};
use crate::domain::access::Principal;

/// The open watch streams: how many each token holds (to cap them), and
/// what the sweeper reads of each.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenWatches(Arc<Opened>);

#[derive(Debug, Default)]
pub(super) struct Opened {
    pub(super) per_token: Mutex<HashMap<String, usize>>,
    pub(super) streams: Mutex<Vec<Weak<Shared>>>,
    pub(super) sweeping: AtomicBool,
    /// Whether the pacer was started.
    pub(super) pacing: AtomicBool,
    /// What wakes the streams.
    pub(super) wakers: Mutex<Wakers>,
    /// Streams open.
    pub(super) count: AtomicUsize,
}

/// What wakes the open streams: per environment watched, the projection's
/// applied position, paced, sent when a change for that environment's
/// watchers was applied (every environment's for the settings and for
/// tokens, whose revocation ends streams).
#[derive(Debug, Default)]
pub(super) struct Wakers {
    by_environment: HashMap<String, tokio::sync::watch::Sender<u64>>,
    /// The pacer ended (the projection closed): streams end, and those
    /// opened after end at once.
    ended: bool,
}

impl Wakers {
    /// A stream's wake-ups: the channel of its environment's.
    pub(super) fn subscribe(
        &mut self,
        environment_id: &str,
        at: u64,
    ) -> tokio::sync::watch::Receiver<u64> {
        if self.ended {
            // Its sender is gone: the stream ends as the others did.
            return tokio::sync::watch::channel(at).1;
        }
        match self.by_environment.get(environment_id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = tokio::sync::watch::channel(at);
                self.by_environment.insert(environment_id.to_owned(), tx);
                rx
            }
        }
    }

    /// Wakes the streams of `environments` (every stream for `None`) with
    /// `at`, and forgets the channels no stream holds any more.
    fn wake(&mut self, at: u64, environments: Option<&HashSet<String>>) {
        self.by_environment.retain(|env, tx| {
            if tx.receiver_count() == 0 {
                return false;
            }
            if environments.is_none_or(|e| e.contains(env)) {
                tx.send_replace(at);
            }
            true
        });
    }

    fn end(&mut self) {
        self.ended = true;
        self.by_environment.clear();
    }
}

/// One open stream of a token; dropping it closes the slot and counts the
/// stream as closed.
#[derive(Debug)]
pub(crate) struct WatchSlot {
    open: OpenWatches,
    token_id: String,
    gauge: Gauge,
}

impl OpenWatches {
    /// Takes a slot for `token_id`, or fails when it holds `max` already.
    fn take(&self, token_id: &str, max: usize, gauge: &Gauge) -> Result<WatchSlot, Status> {
        let mut open = self.0.per_token.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(token_id.to_owned()).or_insert(0);
        if *count >= max {
            return Err(Status::resource_exhausted(format!(
                "this token has {max} watch streams open, the most it may; close one first"
            )));
        }
        *count += 1;
        self.0.count.fetch_add(1, Ordering::Relaxed);
        gauge.inc();
        Ok(WatchSlot {
            open: self.clone(),
            token_id: token_id.to_owned(),
            gauge: gauge.clone(),
        })
    }

    /// Opens a stream for `who` from `cursor` (after `initial` when given),
    /// or fails when `who`'s token holds its most streams already.
    pub(crate) fn open(
        &self,
        app: &App,
        who: Principal,
        cursor: Cursor,
        initial: Option<Vec<Change>>,
        settings: WatchSettings,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Result<WatchStream, Status> {
        let slot = self.take(
            &who.token_id,
            settings.max_per_token,
            &app.metrics().watch_streams,
        )?;
        let shared = Arc::new(Shared {
            polls: AtomicU64::new(0),
            seen_polls: AtomicU64::new(u64::MAX),
            seen_at_ms: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            position: AtomicU64::new(cursor.position()),
            last: AtomicU64::new(cursor.position()),
            cut: Mutex::new(None),
            slot: Mutex::new(Some(slot)),
            who,
            environment_id: cursor.environment_id().to_owned(),
        });
        {
            let mut streams = self.0.streams.lock().unwrap_or_else(|p| p.into_inner());
            streams.retain(|s| s.strong_count() > 0);
            streams.push(Arc::downgrade(&shared));
        }
        if !self.0.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(
                Arc::downgrade(&self.0),
                app.clone(),
                settings.stall_timeout,
                closing.clone(),
            ));
        }
        let at = cursor.position();
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + settings.bookmark_every,
            settings.bookmark_every,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if !self.0.pacing.swap(true, Ordering::AcqRel) {
            let projection = app.projection().clone();
            tokio::spawn(pace(
                (projection.watch_applied(), projection.position()),
                move |after, to| projection.environments_changed(after, to),
                Arc::downgrade(&self.0),
                settings.pace,
            ));
        }
        let head = self
            .0
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .subscribe(cursor.environment_id(), app.projection().position());
        let head = tokio_stream::wrappers::WatchStream::from_changes(head);
        Ok(WatchStream {
            app: app.clone(),
            initial: initial.map(|i| (at, i.into_iter())),
            pending: Batch::default(),
            cursor: Some(cursor),
            reading: None,
            head,
            closing: tokio_stream::wrappers::WatchStream::new(closing),
            ticker,
            shared,
            polls: 0,
            done: false,
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.gauge.dec();
        self.open.0.count.fetch_sub(1, Ordering::Relaxed);
        let mut open = self
            .open
            .0
            .per_token
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.token_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.token_id);
            }
        }
    }
}

/// What a stream shares with the sweeper.
#[derive(Debug)]
pub(super) struct Shared {
    /// How many times the transport asked the stream for more.
    pub(super) polls: AtomicU64,
    /// The sweeper's: `polls` when it last saw them change, and when that
    /// was (milliseconds from the sweeper's start).
    pub(super) seen_polls: AtomicU64,
    pub(super) seen_at_ms: AtomicU64,
    /// Whether the stream had sent everything up to `position` and waited
    /// for the head to move.
    pub(super) waiting: AtomicBool,
    /// The cursor's position.
    pub(super) position: AtomicU64,
    /// The position of the last message handed to the transport: its
    /// token is where the client resumes.
    pub(super) last: AtomicU64,
    /// The status the sweeper ended the stream with, for the client to read
    /// after what it was sent.
    pub(super) cut: Mutex<Option<Status>>,
    /// The stream's slot, until the stream or the sweeper closes it.
    pub(super) slot: Mutex<Option<WatchSlot>>,
    /// Who watches.
    pub(super) who: Principal,
    /// The environment watched.
    pub(super) environment_id: String,
}

impl Shared {
    /// Ends the stream with `status` (unless it ended already), and gives
    /// its slot back now.
    fn cut(&self, status: Status) {
        if self.release_slot() {
            *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
        }
    }

    /// Gives the stream's slot back; returns whether it still held it.
    pub(super) fn release_slot(&self) -> bool {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        slot.is_some()
    }

    pub(super) fn take_cut(&self) -> Option<Status> {
        self.cut.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The pace per open stream: a round of wake-ups costs each stream's
/// task, its connection's task and a write (about 10 µs of CPU, and as
/// much for the client on the same host), so spacing rounds by 40 µs per
/// stream keeps them to about a quarter of a core under any stream of
/// writes. A few watchers wake at once for every commit; 500 wake at most
/// every 20 ms.
pub(super) const PACE_PER_STREAM: Duration = Duration::from_micros(40);

/// Passes the projection's applied position on to the streams: at once
/// after a quiet spell, then, while writes keep coming, once per pace with
/// everything applied meanwhile, so that a wake-up of a watcher sends many
/// changes in one write. A round wakes the streams of the environments
/// `changed(after, to)` names for the records after `after` up to `to`,
/// every stream when it names none; the first round's records are those
/// after `since`, the position when the pacer was started. The pace is
/// [`PACE_PER_STREAM`] per open stream, at most `most`. Ends when the
/// projection closes, which ends the streams.
pub(super) async fn pace(
    (mut applied, since): (tokio::sync::watch::Receiver<u64>, u64),
    changed: impl Fn(u64, u64) -> Option<HashSet<String>>,
    open: Weak<Opened>,
    most: Duration,
) {
    let mut last = since;
    while applied.changed().await.is_ok() {
        let at = *applied.borrow_and_update();
        let Some(opened) = open.upgrade() else {
            return;
        };
        let environments = changed(last, at);
        opened
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wake(at, environments.as_ref());
        last = at;
        let streams = opened.count.load(Ordering::Relaxed);
        drop(opened);
        let every = PACE_PER_STREAM
            .saturating_mul(u32::try_from(streams).unwrap_or(u32::MAX))
            .min(most);
        if !every.is_zero() {
            tokio::time::sleep(every).await;
        }
    }
    if let Some(opened) = open.upgrade() {
        opened
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .end();
    }
}

/// Every so often (at most every second, and four times per stall
/// timeout), ends the streams whose client stopped reading for the stall
/// timeout while they had changes to send, and those whose caller's token
/// was revoked or whose environment was deleted: a stream the transport
/// does not ask for more cannot see either itself. Stops with the server
/// or when the last handle on the open streams goes.
async fn sweep(
    open: Weak<Opened>,
    app: App,
    stall_timeout: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let every = (stall_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let started = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        let Some(open) = open.upgrade() else { return };
        let streams: Vec<Arc<Shared>> = {
            let mut streams = open.streams.lock().unwrap_or_else(|p| p.into_inner());
            streams.retain(|s| s.strong_count() > 0);
            streams.iter().filter_map(Weak::upgrade).collect()
        };
        drop(open);
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let projection = app.projection();
        for s in streams {
            // Unread since the first sweep that found no new ask.
            let polls = s.polls.load(Ordering::Relaxed);
            if s.seen_polls.swap(polls, Ordering::Relaxed) != polls {
                s.seen_at_ms.store(now_ms, Ordering::Relaxed);
                continue;
            }
            let unread = Duration::from_millis(now_ms - s.seen_at_ms.load(Ordering::Relaxed));
            // A stream the transport stopped asking: it has changes at hand
            // (it was not waiting), or a change for its environment came
            // after it, which wakes a stream whose client reads.
            let behind = !s.waiting.load(Ordering::Acquire)
                || projection.changed_after(&s.environment_id, s.position.load(Ordering::Acquire));
            if let Err(e) = app.check_still_valid(&s.who) {
                s.cut(Status::from(e));
            } else if behind && unread >= stall_timeout {
                let last = app.token(s.last.load(Ordering::Relaxed));
                s.cut(Status::resource_exhausted(format!(
                    "the stream was not read for {stall_timeout:?}; resume with the token of the last message processed ({last})"
                )));
            }
        }
    }
}
