//! In-memory `EventLog` and `KeyStore` with the same semantics as the sled
//! ones, minus durability: for tests and tools that need no disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::domain::state::set_version;

use super::{
    codec, plan, request_record, Commit, Envelope, Error, EventLog, KeyStore, RequestRecord, Result,
};

/// An event log held in memory; every append is "durable" at once. Its key
/// store (`keys`) takes each commit's data keys under the log's lock.
#[derive(Debug)]
pub struct MemoryLog {
    state: Mutex<LogState>,
    head: watch::Sender<u64>,
    log_id: String,
    keys: Arc<MemoryKeys>,
}

#[derive(Debug, Default)]
struct LogState {
    /// Records in position order: position `p` is at index `p - 1`.
    records: Vec<Envelope>,
    versions: HashMap<String, u64>,
    /// Positions of each stream's records, in order.
    streams: HashMap<String, Vec<u64>>,
    requests: HashMap<String, RequestRecord>,
}

impl MemoryLog {
    /// Creates an empty log with a fresh random id.
    pub fn new() -> Self {
        MemoryLog {
            state: Mutex::default(),
            head: watch::Sender::new(0),
            log_id: uuid::Uuid::new_v4().to_string(),
            keys: Arc::default(),
        }
    }

    /// Returns the key store that takes this log's commits' data keys.
    pub fn keys(&self) -> Arc<MemoryKeys> {
        Arc::clone(&self.keys)
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state
            .lock()
            .expect("no code panics while holding the memory log's lock")
    }
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl EventLog for MemoryLog {
    async fn append(&self, commit: Commit) -> Result<Vec<Envelope>> {
        let mut state = self.lock();
        // Duplicates are checked first so a retry sees its first result rather
        // than a conflict with its own earlier events.
        if let Some(key) = commit.request_key() {
            if let Some(record) = state.requests.get(&key) {
                return Err(Error::DuplicateRequest {
                    record: record.clone(),
                });
            }
        }
        if let Some((id, _)) = commit
            .keys
            .created
            .iter()
            .find(|(id, _)| self.keys.contains(id))
        {
            return Err(Error::KeyExists(id.clone()));
        }
        let head = state.records.len() as u64;
        let mut envelopes = plan(&commit, head, |s| {
            state.versions.get(s).copied().unwrap_or(0)
        })?;
        for env in &mut envelopes {
            // Encoding sets the CRC, so records match what the sled log returns.
            codec::encode(env);
            set_version(&mut state.versions, &env.stream, env.stream_version);
            state
                .streams
                .entry(env.stream.clone())
                .or_default()
                .push(env.position);
            state.records.push(env.clone());
        }
        if let Some(record) = request_record(&commit, &envelopes) {
            state.requests.insert(record.request_id.clone(), record);
        }
        self.keys.apply(&commit.keys);
        // Published under the lock: a later commit must never be overtaken
        // by an earlier one's smaller head.
        self.head.send_replace(state.records.len() as u64);
        drop(state);
        Ok(envelopes)
    }

    fn head(&self) -> u64 {
        *self.head.borrow()
    }

    async fn read(&self, from: u64, max: usize) -> Result<Vec<Envelope>> {
        let state = self.lock();
        let start = usize::try_from(from.max(1) - 1).unwrap_or(usize::MAX);
        Ok(state
            .records
            .iter()
            .skip(start)
            .take(max)
            .cloned()
            .collect())
    }

    async fn read_stream(&self, stream: &str, up_to: u64) -> Result<Vec<Envelope>> {
        let state = self.lock();
        let Some(positions) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        Ok(positions
            .iter()
            .take_while(|p| **p <= up_to)
            .map(|p| state.records[(*p - 1) as usize].clone())
            .collect())
    }

    async fn stream_version(&self, stream: &str) -> Result<u64> {
        Ok(self.lock().versions.get(stream).copied().unwrap_or(0))
    }

    async fn find_request(&self, actor: &str, request_id: &str) -> Result<Option<RequestRecord>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let key = super::request_key(actor, request_id);
        Ok(self.lock().requests.get(&key).cloned())
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn log_id(&self) -> &str {
        &self.log_id
    }
}

/// A key store held in memory; its `MemoryLog` writes the keys of commits.
#[derive(Debug, Default)]
pub struct MemoryKeys {
    state: Mutex<KeysState>,
}

#[derive(Debug, Default)]
struct KeysState {
    keys: BTreeMap<String, Vec<u8>>,
    meta: HashMap<String, Vec<u8>>,
}

impl MemoryKeys {
    /// Returns whether a data key is stored for `id`.
    fn contains(&self, id: &str) -> bool {
        self.lock().keys.contains_key(id)
    }

    /// Applies a commit's key changes.
    fn apply(&self, changes: &super::KeyChanges) {
        let mut state = self.lock();
        for (id, wrapped) in &changes.created {
            state.keys.insert(id.clone(), wrapped.clone());
        }
        for id in &changes.destroyed {
            state.keys.remove(id);
        }
    }

    fn lock(&self) -> MutexGuard<'_, KeysState> {
        self.state
            .lock()
            .expect("no code panics while holding the memory key store's lock")
    }
}

#[async_trait::async_trait]
impl KeyStore for MemoryKeys {
    async fn get(&self, credential_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().keys.get(credential_id).cloned())
    }

    async fn replace(&self, credential_id: &str, current: &[u8], new: Vec<u8>) -> Result<bool> {
        let mut state = self.lock();
        match state.keys.get_mut(credential_id) {
            Some(stored) if stored.as_slice() == current => {
                *stored = new;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, credential_ids: &[String]) -> Result<()> {
        let mut state = self.lock();
        for id in credential_ids {
            state.keys.remove(id);
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        Ok(self.lock().keys.keys().cloned().collect())
    }

    async fn all(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .lock()
            .keys
            .iter()
            .map(|(id, wrapped)| (id.clone(), wrapped.clone()))
            .collect())
    }

    async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().meta.get(name).cloned())
    }

    async fn set_meta(&self, name: &str, value: Vec<u8>) -> Result<()> {
        self.lock().meta.insert(name.to_owned(), value);
        Ok(())
    }
}
