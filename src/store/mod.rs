//! The event log and key store: their traits, the commit types, the store's
//! error, and the commit planning both implementations share.
//! Backends are siblings: `sled/` (the embedded default) and `memory.rs`
//! (tests and tools); `conformance.rs` is the one suite every backend passes.

pub mod codec;
pub mod copy;
pub mod memory;
pub mod payload;
pub mod postgres;
pub mod sled;

#[cfg(test)]
mod conformance;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

pub use self::memory::{MemoryKeys, MemoryLog};
pub use self::sled::{SledKeys, SledLog, SledStore};
pub use crate::event_pb::Envelope;

/// One event to append: its type, schema version and opaque payload.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Names the payload message, e.g. `registry.created`.
    pub event_type: String,
    /// Schema version of the payload message.
    pub schema_version: u32,
    /// The encoded event message; the store never looks inside.
    pub payload: Vec<u8>,
}

/// Events for one stream, appended only if the stream is at `expected_version`.
///
/// An append without events is a pure guard: it checks the version and
/// writes nothing for that stream.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    /// The stream, e.g. `env/<id>` or `reg/<env>/<address>`.
    pub stream: String,
    /// The stream's current version the commit was decided against (0 when empty).
    pub expected_version: u64,
    /// Events to append, in order.
    pub events: Vec<NewEvent>,
}

/// An atomic unit of appends, possibly over several streams.
///
/// When a stream appears in several appends of one commit, they apply in
/// order: the second one expects the version the first one leaves.
#[derive(Debug, Clone)]
pub struct Commit {
    /// Appends, in order; their events get consecutive positions.
    pub appends: Vec<StreamAppend>,
    /// Token id of the caller, or `system`.
    pub actor: String,
    /// Idempotency key of the request; empty means none.
    pub request_id: String,
    /// Keyed hash of the request, to tell a retry from a reuse of its id.
    pub request_fingerprint: Vec<u8>,
    /// Time recorded on every event of the commit.
    pub time: SystemTime,
    /// Data keys the commit creates and destroys, written in the same atomic,
    /// durable write as its events.
    pub keys: KeyChanges,
}

/// The data-key side of a commit: the store writes the wrapped keys of the
/// credentials a commit creates and deletes those of the credentials it
/// destroys in the same atomic write as the events, so no outcome (a failed
/// flush, a cancelled caller, a crash) leaves a live credential without its
/// key or a dead credential with one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChanges {
    /// `(credential_id, wrapped data key)` of every credential created.
    pub created: Vec<(String, Vec<u8>)>,
    /// Credential ids whose data keys are destroyed.
    pub destroyed: Vec<String>,
}

impl KeyChanges {
    /// Returns whether the commit touches no data key.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.destroyed.is_empty()
    }
}

impl Commit {
    /// Returns the key under which the store records the commit's request
    /// id: request ids belong to the caller that used them, so the same id
    /// from another caller is another request.
    pub fn request_key(&self) -> Option<String> {
        (!self.request_id.is_empty()).then(|| request_key(&self.actor, &self.request_id))
    }
}

/// Returns the store key of a caller's request id (`actor`, NUL, `request_id`).
pub fn request_key(actor: &str, request_id: &str) -> String {
    format!("{actor}\0{request_id}")
}

/// What the log remembers, forever, of a commit that carried a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The commit's request key: its actor and request id (see `request_key`).
    pub request_id: String,
    /// Position of the commit's first event.
    pub first_position: u64,
    /// Position of the commit's last event.
    pub last_position: u64,
    /// The commit's request fingerprint.
    pub fingerprint: Vec<u8>,
}

/// Errors of the store.
///
/// `StorageFull` and `Storage` from `append` mean the outcome is unknown: the
/// commit's records may still become durable with a later flush. A retry with
/// the same request id resolves it (`DuplicateRequest` if it was recorded).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stream was not at the version the commit expected; nothing was written.
    #[error("stream {stream:?} is at version {actual}, not the expected {expected}")]
    Conflict {
        /// The stream whose version differed.
        stream: String,
        /// The version the commit expected.
        expected: u64,
        /// The stream's version when the commit was checked.
        actual: u64,
    },
    /// The commit's request id was already recorded; nothing was written.
    #[error(
        "request id {:?} was already recorded at positions {}..={}",
        record.request_id,
        record.first_position,
        record.last_position
    )]
    DuplicateRequest {
        /// The first commit's record, for the caller to compare fingerprints.
        record: RequestRecord,
    },
    /// A record failed verification; the log cannot be trusted.
    #[error(
        "event log corrupt at position {position}: {reason}; \
         restore the data directory from a backup"
    )]
    Corrupt {
        /// The position of the bad or missing record (0 for log metadata).
        position: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// The disk is full.
    #[error("storage is full")]
    StorageFull,
    /// The storage engine failed.
    #[error("storage error: {source}")]
    Storage {
        /// The engine's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A commit would create a data key that exists already; nothing was
    /// written. Credential ids are fresh, so this is a bug, never a retry.
    #[error("a data key for credential {0:?} exists already: credential ids are never reused")]
    KeyExists(String),
    /// The shared database cannot be reached: nothing was written, or (a
    /// connection lost during a commit) the outcome is unknown, as for
    /// `Storage`. A retry with the same request id settles it.
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// A commit held no event.
    #[error("a commit needs at least one event")]
    EmptyCommit,
    /// A commit held more events than a record's `commit_size` can count.
    #[error("a commit holds {events} events, more than {max}")]
    CommitTooLarge {
        /// Events in the commit.
        events: usize,
        /// The most events one commit may hold.
        max: u64,
    },
    /// The data directory was written in a format this build does not read.
    #[error("unsupported data format {found:?}; this build reads {reads}")]
    UnsupportedFormat {
        /// The format recorded in the data directory.
        found: String,
        /// The formats this build reads.
        reads: &'static str,
    },
}

impl Error {
    /// Wraps a message as a storage error.
    pub(crate) fn storage(message: impl Into<String>) -> Self {
        Error::Storage {
            source: message.into().into(),
        }
    }
}

/// The result type of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An append-only log of event records, durable once `append` returns.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + std::fmt::Debug + 'static {
    /// Appends a commit atomically and returns its recorded envelopes (positions, stream versions, times set) once durable.
    async fn append(&self, commit: Commit) -> Result<Vec<Envelope>>;
    /// Returns the durable head position (0 when empty).
    fn head(&self) -> u64;
    /// Returns up to `max` verified records with positions in `from..=head` (from >= 1).
    ///
    /// A `from` of 0 reads from 1.
    async fn read(&self, from: u64, max: usize) -> Result<Vec<Envelope>>;
    /// Returns the records of one stream up to and including `up_to` position, in order.
    async fn read_stream(&self, stream: &str, up_to: u64) -> Result<Vec<Envelope>>;
    /// Returns the stream's durable version (0 when empty).
    async fn stream_version(&self, stream: &str) -> Result<u64>;
    /// Returns the durable record of a caller's request id, if a commit of
    /// that caller (`actor`) carried it.
    async fn find_request(&self, actor: &str, request_id: &str) -> Result<Option<RequestRecord>>;
    /// Returns the head, asking the storage for it first where other
    /// processes append to the same log (a shared database), so a caller
    /// that waits for it sees their commits without waiting for a poll.
    async fn refresh_head(&self) -> Result<u64> {
        Ok(self.head())
    }
    /// Subscribes to the durable head; woken after every durable commit.
    fn watch_head(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Returns the random id of this log, fixed at creation.
    fn log_id(&self) -> &str;
}

/// A keyspace beside the log for wrapped data keys, so deleting one
/// crypto-shreds the ciphertext left in the log.
///
/// Keys are created and destroyed by commits (`Commit::keys`), in the same
/// atomic write as their events. The only other writes are the start-up
/// sweep (`delete`) and key rotation (`replace`).
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug + 'static {
    /// Returns the wrapped data key of a credential.
    async fn get(&self, credential_id: &str) -> Result<Option<Vec<u8>>>;
    /// Replaces a wrapped data key only if it still is `current`, atomically
    /// and durably; returns whether it was replaced. A key deleted meanwhile
    /// stays deleted (rotation never resurrects a destroyed credential).
    async fn replace(&self, credential_id: &str, current: &[u8], new: Vec<u8>) -> Result<bool>;
    /// Deletes wrapped data keys (missing ones are ignored); durable on return.
    async fn delete(&self, credential_ids: &[String]) -> Result<()>;
    /// Lists the credential ids that have a data key, sorted.
    async fn list(&self) -> Result<Vec<String>>;
    /// Returns every wrapped data key with its credential id, sorted by id,
    /// in one read of the store: the start loads them all, and rotation
    /// and its status look at them all (a lookup per key was a round trip
    /// per registry to PostgreSQL).
    async fn all(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Returns a metadata value of the key store, e.g. the key-encryption key's id.
    async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Sets a metadata value of the key store; durable on return.
    async fn set_meta(&self, name: &str, value: Vec<u8>) -> Result<()>;
}

/// Checks what can be checked of a commit without the log, before queueing it.
fn check_shape(commit: &Commit) -> Result<()> {
    let events: usize = commit.appends.iter().map(|a| a.events.len()).sum();
    if events == 0 {
        return Err(Error::EmptyCommit);
    }
    if u32::try_from(events).is_err() {
        return Err(Error::CommitTooLarge {
            events,
            max: u64::from(u32::MAX),
        });
    }
    Ok(())
}

/// Checks a commit's expected versions and lays out its envelopes after `head`.
///
/// `version` returns a stream's current version in the writer's state. The
/// envelopes come back unencoded (no CRC yet). Nothing is changed on error.
fn plan(commit: &Commit, head: u64, mut version: impl FnMut(&str) -> u64) -> Result<Vec<Envelope>> {
    check_shape(commit)?;
    let commit_size: usize = commit.appends.iter().map(|a| a.events.len()).sum();
    let commit_size = u32::try_from(commit_size).expect("check_shape bounds the commit size");
    let time = prost_types::Timestamp::from(commit.time);
    // Streams touched earlier in this commit, at the version they were left.
    let mut touched: HashMap<&str, u64> = HashMap::new();
    let mut envelopes = Vec::with_capacity(commit_size as usize);
    let mut position = head;
    for append in &commit.appends {
        let stream = append.stream.as_str();
        let actual = match touched.get(stream) {
            Some(v) => *v,
            None => version(stream),
        };
        if actual != append.expected_version {
            return Err(Error::Conflict {
                stream: append.stream.clone(),
                expected: append.expected_version,
                actual,
            });
        }
        let mut stream_version = actual;
        for event in &append.events {
            position += 1;
            stream_version += 1;
            envelopes.push(Envelope {
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
                stream: append.stream.clone(),
                stream_version,
                position,
                time: Some(time),
                actor: commit.actor.clone(),
                request_id: commit.request_id.clone(),
                request_fingerprint: commit.request_fingerprint.clone(),
                commit_size,
                payload: event.payload.clone(),
                crc32c: None,
            });
        }
        touched.insert(stream, stream_version);
    }
    Ok(envelopes)
}

/// Returns the positions `read(from, max)` covers below a durable `head`:
/// `None` when there is nothing to read.
fn read_range(from: u64, max: usize, head: u64) -> Option<(u64, u64)> {
    let from = from.max(1);
    if from > head || max == 0 {
        return None;
    }
    let max = u64::try_from(max).unwrap_or(u64::MAX);
    Some((from, head.min(from.saturating_add(max - 1))))
}

/// The error of a record missing from a contiguous range.
fn missing(position: u64) -> Error {
    Error::Corrupt {
        position,
        reason: "record is missing".into(),
    }
}

/// Returns the request record of a planned commit, if it carries a request id.
fn request_record(commit: &Commit, envelopes: &[Envelope]) -> Option<RequestRecord> {
    let key = commit.request_key()?;
    let (first, last) = (envelopes.first()?, envelopes.last()?);
    Some(RequestRecord {
        request_id: key,
        first_position: first.position,
        last_position: last.position,
        fingerprint: commit.request_fingerprint.clone(),
    })
}

/// Where a store's writer reports each group it writes (the metrics);
/// empty until the server sets it, and the writer reports nothing then.
pub type WriteObserver = Arc<std::sync::OnceLock<crate::metrics::StoreMetrics>>;

/// Reports a written group to `observer`, if one is set: its size, the
/// commits written and refused for a lost race, and the write's duration.
pub(crate) fn observe_group(
    observer: &WriteObserver,
    outcomes: &[Result<Vec<Envelope>>],
    took: std::time::Duration,
) {
    if let Some(metrics) = observer.get() {
        let written = outcomes.iter().filter(|o| o.is_ok()).count();
        let conflicts = outcomes
            .iter()
            .filter(|o| matches!(o, Err(Error::Conflict { .. })))
            .count();
        metrics.group(outcomes.len(), written, conflicts, took);
    }
}
