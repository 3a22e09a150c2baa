//! The one writer task of the sled log: it takes a queued commit and what
//! else is queued or joins the queue meanwhile (`gather`), checks them in
//! order against the stream versions, writes the accepted ones as one
//! batch, flushes, and only then publishes the durable head and replies.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::streams::{SharedStreams, Streams};
use super::{
    decode_request, encode_request, flush, malformed_key, plan, prefixed, record_key,
    record_position, request_record, Commit, Envelope, Error, RequestRecord, Result, Space,
    DATA_KEY, MAX_GROUP, RECORD, REQUEST,
};
use crate::store::codec;

/// A commit waiting for the writer, with where to send its outcome.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) commit: Commit,
    pub(super) reply: oneshot::Sender<Result<Vec<Envelope>>>,
}

/// Counters and fault switches the tests use to watch the writer.
#[cfg(test)]
#[derive(Debug, Default)]
pub(super) struct Probe {
    pub(super) flushes: std::sync::atomic::AtomicU64,
    pub(super) fail_apply: std::sync::atomic::AtomicBool,
    pub(super) fail_flush: std::sync::atomic::AtomicBool,
}

/// The one task that writes the log.
pub(super) struct Writer {
    pub(super) db: ::sled::Db,
    /// The log's tree, which holds the data keys too: a commit's data keys
    /// are written in its batch.
    pub(super) tree: ::sled::Tree,
    /// The last position in the tree, durable or not; `None` after a
    /// failed reload: reloaded again before the next group.
    pub(super) applied: Option<u64>,
    /// The stream index, which the writer alone extends: every accepted
    /// record's stream version, whether or not its group is durable yet.
    pub(super) streams: SharedStreams,
    /// The published head: flushed, visible to readers.
    pub(super) durable: u64,
    pub(super) head: Arc<watch::Sender<u64>>,
    pub(super) space: Space,
    /// Where each group is reported.
    pub(super) observer: crate::store::WriteObserver,
    #[cfg(test)]
    pub(super) probe: Arc<Probe>,
}

impl Writer {
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Pending>, stop: Arc<Notify>) {
        loop {
            let first = tokio::select! {
                pending = rx.recv() => match pending {
                    Some(pending) => pending,
                    None => break,
                },
                () = stop.notified() => {
                    // Refuse new commits but still serve the queued ones.
                    rx.close();
                    continue;
                }
            };
            let group = gather(first, &mut rx).await;
            self.commit_group(group).await;
        }
        tracing::debug!(head = self.durable, "event log writer stopped");
    }

    async fn commit_group(&mut self, group: Vec<Pending>) {
        let start = std::time::Instant::now();
        match self.write_group(&group).await {
            Ok(outcomes) => {
                crate::store::observe_group(&self.observer, &outcomes, start.elapsed());
                for (pending, outcome) in group.into_iter().zip(outcomes) {
                    // The caller may have gone away; its commit stands anyway.
                    let _ = pending.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, commits = group.len(), "event log write failed");
                // The batch may or may not be in the tree: trust only the tree.
                self.applied = match reload(&self.tree, &mut self.streams.write()) {
                    Ok(head) => Some(head),
                    Err(e) => {
                        tracing::error!(error = %e, "event log state reload failed");
                        None
                    }
                };
                for pending in group {
                    let _ = pending.reply.send(Err(shared_error(&e)));
                }
            }
        }
    }

    /// Checks, applies and flushes a group; an error fails the whole group.
    async fn write_group(&mut self, group: &[Pending]) -> Result<Vec<Result<Vec<Envelope>>>> {
        let mut head = match self.applied {
            Some(head) => head,
            None => reload(&self.tree, &mut self.streams.write())?,
        };
        self.applied = Some(head);
        let mut batch = ::sled::Batch::default();
        let mut requests = HashMap::new();
        let mut created = std::collections::HashSet::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut accepted = false;
        for pending in group {
            let outcome = accept(
                &self.tree,
                (&mut head, &self.streams),
                &mut batch,
                (&mut requests, &created),
                &pending.commit,
            )?;
            if outcome.is_ok() {
                accepted = true;
                let changes = &pending.commit.keys;
                for (id, wrapped) in &changes.created {
                    batch.insert(prefixed(DATA_KEY, id), wrapped.as_slice());
                    created.insert(id.clone());
                }
                for id in &changes.destroyed {
                    batch.remove(prefixed(DATA_KEY, id));
                }
            }
            outcomes.push(outcome);
        }
        // The group's positions count as applied from here: a failure below
        // reloads them from the tree.
        self.applied = Some(head);
        let applied = head;
        if accepted {
            self.space.check()?;
            #[cfg(test)]
            if self
                .probe
                .fail_apply
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                return Err(Error::storage("injected apply failure"));
            }
            self.tree
                .apply_batch(batch)
                .map_err(|e| self.space.explain(Error::from(e)))?;
        }
        // Also flushes when an earlier group applied but failed to flush, so a
        // duplicate found in such a batch is durable before it is reported.
        if applied > self.durable {
            #[cfg(test)]
            if self
                .probe
                .fail_flush
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                return Err(Error::StorageFull);
            }
            flush(&self.db).await.map_err(|e| self.space.explain(e))?;
            #[cfg(test)]
            self.probe
                .flushes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.durable = applied;
            self.head.send_replace(applied);
        }
        Ok(outcomes)
    }
}

/// Reads the head from the tree after a failed write, trusting it as
/// written (a batch is applied whole or not at all), and makes the stream
/// index forget the versions it holds past it: those of a group whose
/// batch did not reach the tree. The index never runs behind the tree.
fn reload(tree: &::sled::Tree, streams: &mut Streams) -> Result<u64> {
    let head = match tree.scan_prefix([RECORD]).next_back() {
        Some(item) => {
            let (key, _) = item?;
            record_position(&key).ok_or_else(|| malformed_key(0, "record"))?
        }
        None => 0,
    };
    streams.truncate(head);
    Ok(head)
}

/// Rounds of yielding to the runtime that `gather` does at most. One is
/// enough for callers on the network to join (the yield polls the
/// sockets); more only delay the flush behind busy tasks: in process, 64
/// callers wrote 15% less with four rounds than with one (BENCHMARKS.md).
const GATHER_ROUNDS: usize = 1;

/// Makes a group of `first` and the commits queued behind it, letting the
/// runtime run the tasks that are ready (and poll the sockets) for up to
/// `GATHER_ROUNDS` rounds while a round brings more: under load, callers
/// that are deciding at this moment join this group rather than each
/// waiting for a flush of its own, so groups grow with load and flushes do
/// not; with one caller it costs one yield.
async fn gather(first: Pending, rx: &mut mpsc::Receiver<Pending>) -> Vec<Pending> {
    let mut group = vec![first];
    drain(rx, &mut group);
    for _ in 0..GATHER_ROUNDS {
        if group.len() >= MAX_GROUP {
            break;
        }
        tokio::task::yield_now().await;
        let before = group.len();
        drain(rx, &mut group);
        if group.len() == before {
            break;
        }
    }
    group
}

/// Adds what is queued to `group`, up to `MAX_GROUP` commits.
fn drain(rx: &mut mpsc::Receiver<Pending>, group: &mut Vec<Pending>) {
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(pending) => group.push(pending),
            Err(_) => break,
        }
    }
}

/// Checks one commit against the state and adds it to the batch if accepted.
///
/// The outer error is a storage failure (fails the group); the inner one is
/// this commit's rejection.
fn accept(
    tree: &::sled::Tree,
    (head, streams): (&mut u64, &SharedStreams),
    batch: &mut ::sled::Batch,
    (requests, created): (
        &mut HashMap<String, RequestRecord>,
        &std::collections::HashSet<String>,
    ),
    commit: &Commit,
) -> Result<Result<Vec<Envelope>>> {
    // Duplicates first, so a retry gets its first result, not a conflict.
    if let Some(key) = commit.request_key() {
        let known = match requests.get(&key) {
            Some(record) => Some(record.clone()),
            None => match tree.get(prefixed(REQUEST, &key))? {
                Some(value) => Some(decode_request(&key, &value)?),
                None => None,
            },
        };
        if let Some(record) = known {
            return Ok(Err(Error::DuplicateRequest { record }));
        }
    }
    // A commit never replaces a data key: that would lose a live credential.
    for (id, _) in &commit.keys.created {
        if created.contains(id) || tree.contains_key(prefixed(DATA_KEY, id))? {
            return Ok(Err(Error::KeyExists(id.clone())));
        }
    }
    // The index is locked only to plan and extend it; encoding is after.
    let mut envelopes = {
        let mut streams = streams.write();
        let planned = plan(commit, *head, |stream| streams.version(stream));
        let envelopes = match planned {
            Ok(envelopes) => envelopes,
            Err(rejection) => return Ok(Err(rejection)),
        };
        for env in &envelopes {
            streams.push(&env.stream, env.position);
        }
        envelopes
    };
    for env in &mut envelopes {
        batch.insert(&record_key(env.position)[..], codec::encode(env));
        *head = env.position;
    }
    if let Some(record) = request_record(commit, &envelopes) {
        batch.insert(
            prefixed(REQUEST, &record.request_id),
            encode_request(&record),
        );
        requests.insert(record.request_id.clone(), record);
    }
    Ok(Ok(envelopes))
}

/// Makes one commit's copy of a group's error.
fn shared_error(e: &Error) -> Error {
    match e {
        Error::StorageFull => Error::StorageFull,
        Error::Corrupt { position, reason } => Error::Corrupt {
            position: *position,
            reason: reason.clone(),
        },
        Error::Storage { source } => Error::storage(source.to_string()),
        other => Error::storage(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::one;

    fn pending(stream: &str) -> Pending {
        Pending {
            commit: one(stream, 0),
            reply: oneshot::channel().0,
        }
    }

    #[tokio::test]
    async fn a_group_takes_in_the_callers_ready_to_run() {
        let (tx, mut rx) = mpsc::channel(64);
        // Callers that are ready but have not run yet when the writer takes
        // the first commit (on this one-thread runtime they run only once
        // the writer yields).
        for i in 0..20 {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(pending(&format!("s{i}"))).await.unwrap() });
        }
        let group = gather(pending("first"), &mut rx).await;
        assert_eq!(group.len(), 21);
        // Alone, a commit is taken after one yield that brings nothing.
        let group = gather(pending("alone"), &mut rx).await;
        assert_eq!(group.len(), 1);
    }
}
