//! The durable `EventLog` and `KeyStore` on sled 0.34: the key layout, open
//! and close, and the log's readers. The checks at open are in `verify.rs`,
//! the one writer task that group-commits in `writer.rs`, the stream index
//! it keeps in memory in `streams.rs`, the key store in `keys.rs`. The only
//! module that names the sled crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use super::{
    codec, missing, plan, request_record, Commit, Envelope, Error, EventLog, RequestRecord, Result,
};

mod format;
mod keys;
mod streams;
mod verify;
mod writer;

use format::{init_meta, IndexCleaner};
pub use keys::SledKeys;
use streams::SharedStreams;
use verify::verify;

#[cfg(test)]
use writer::Probe;
use writer::{Pending, Writer};

const LOG_TREE: &str = "log";
/// The tree of the data keys in formats 1 and 2 (see `format.rs`).
const KEYS_TREE: &str = "keys";

// Prefixes of the `log` tree; see `SledStore` for the layout.
const RECORD: u8 = b'e';
/// Stream versions, kept by format 1 only.
const VERSION: u8 = b'v';
/// The stream index of formats 1 to 3 (stream, version → position), which
/// format 4 keeps in memory only (`streams.rs`).
const INDEX: u8 = b'i';
const REQUEST: u8 = b'q';
const META: u8 = b'm';
/// The key store's: a credential's wrapped data key, and its meta.
const DATA_KEY: u8 = b'k';
const KEYS_META: u8 = b'w';

/// The format this build writes: 4, the data keys in the log's tree and
/// the stream index in memory, upgraded at open from formats 1 to 3 (see
/// `format.rs`).
const FORMAT: &[u8] = b"4";
/// Most commits one group (one batch, one flush) takes from the queue.
const MAX_GROUP: usize = 512;
/// Commits that may wait for the writer before `append` waits to queue.
const QUEUE: usize = 1024;
/// Free space below which writes are refused with `StorageFull` before sled
/// sees them. sled 0.34 stops accepting writes for good (until the process
/// restarts) after one failed disk write, so the store must not let it run
/// into a full disk: a refused write leaves it healthy, and writes resume as
/// soon as space returns.
pub const MIN_FREE_BYTES: u64 = 4 * 1024 * 1024;

/// The sled database of a data directory: the event log and the key store.
///
/// One `sled::Db` holds one tree, `log` (integers are u64 big-endian, so
/// keys sort by number):
///
/// | key                                   | value                               |
/// |---------------------------------------|-------------------------------------|
/// | `e` position                          | the record (see `codec`)            |
/// | `q` request_id                        | first position, last position, fingerprint |
/// | `m` name                              | meta: `log_id` (random uuid), `format` (`4`) |
/// | `k` credential_id                     | the credential's wrapped data key   |
/// | `w` name                              | the key store's meta                |
///
/// One key per event: the stream index (the position of each version of
/// each stream) is in memory, built from the records as a start verifies
/// them and extended by the writer. A request key is the caller's token
/// id, a NUL and its request id. A commit's data keys are written in the
/// same batch as its records, made durable by the same flush; the key
/// store's own writes (rotation, shredding) touch the `k` and `w` keys
/// only. Formats 1 to 3 kept more, and a start upgrades them
/// (`format.rs`).
///
/// One writer task owns every write of records to `log`. It takes a queued commit and
/// whatever else is queued or joins the queue while the runtime runs the
/// tasks that are ready (up to 512), checks them in order, writes
/// the accepted ones as one `sled::Batch`, flushes, and only then publishes the
/// new durable head and replies. Readers never read past the durable head.
#[derive(Debug)]
pub struct SledStore {
    db: ::sled::Db,
    log: Arc<SledLog>,
    keys: Arc<SledKeys>,
    stop: Arc<Notify>,
    writer: JoinHandle<()>,
    observer: crate::store::WriteObserver,
    /// Removes the on-disk stream index of an older format, if any is left.
    cleaner: Option<IndexCleaner>,
}

impl SledStore {
    /// Opens or creates the store in `dir`, verifying every record of the log.
    ///
    /// Must be called inside a tokio runtime: it spawns the writer task, which
    /// ends on `close` or when every `SledLog` handle is dropped. Corruption
    /// fails with `Error::Corrupt` rather than opening a partial log.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_folding(dir, DEFAULT_CACHE_BYTES, &mut |_| Ok(()))
    }

    /// Opens the store as [`SledStore::open`] does, with sled's page cache
    /// bounded by `cache_bytes`, handing each record to `fold` in log order
    /// as it is verified, so that a view of the whole log is built in the
    /// same pass over it. An error from `fold` fails the open.
    pub fn open_folding(
        dir: &Path,
        cache_bytes: u64,
        fold: &mut dyn FnMut(&Envelope) -> Result<()>,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::storage("the sled store must be opened inside a tokio runtime"))?;
        let db = open_db(dir, cache_bytes)?;
        let tree = db.open_tree(LOG_TREE)?;
        let (log_id, found) = init_meta(&tree)?;
        let (applied, streams) = verify(&tree, fold, found)?;
        format::upgrade(&db, &tree, found)?;
        db.flush()?;
        // The pass read the whole log through sled's page cache and left it
        // full of pages that no one reads again (the view holds the log
        // folded), and the allocator's pages half used by what it evicted
        // on the way: a third of the memory of a server started on a large
        // log. Opening the database again gives all of it back (about 120
        // ms for a million events); the cache then fills with the pages
        // that writes and history reads touch.
        drop(tree);
        drop(db);
        let db = open_db(dir, cache_bytes)?;
        let tree = db.open_tree(LOG_TREE)?;
        tracing::info!(
            head = applied,
            streams = streams.len(),
            "event log verified"
        );
        let streams = SharedStreams::new(streams);

        let space = Space {
            dir: dir.to_path_buf(),
        };
        let head = Arc::new(watch::Sender::new(applied));
        let stop = Arc::new(Notify::new());
        #[cfg(test)]
        let probe = Arc::new(Probe::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let observer = crate::store::WriteObserver::default();
        let writer = Writer {
            db: db.clone(),
            tree: tree.clone(),
            durable: applied,
            applied: Some(applied),
            streams: streams.clone(),
            head: Arc::clone(&head),
            space: space.clone(),
            observer: Arc::clone(&observer),
            #[cfg(test)]
            probe: Arc::clone(&probe),
        };
        let writer = runtime.spawn(writer.run(rx, Arc::clone(&stop)));
        let log = Arc::new(SledLog {
            tree: tree.clone(),
            streams,
            tx,
            head,
            log_id,
            #[cfg(test)]
            probe,
        });
        let cleaner = IndexCleaner::start(&log, space.clone())?;
        let keys = Arc::new(SledKeys { tree, space });
        Ok(SledStore {
            db,
            log,
            keys,
            stop,
            writer,
            observer,
            cleaner,
        })
    }

    /// Waits until the on-disk stream index of an older format is removed.
    #[cfg(test)]
    pub(crate) async fn finish_index_cleanup(&mut self) {
        if let Some(cleaner) = self.cleaner.take() {
            cleaner.finish().await;
        }
    }

    /// Has the writer report each group it writes to `metrics`.
    pub fn observe(&self, metrics: crate::metrics::StoreMetrics) {
        let _ = self.observer.set(metrics);
    }

    /// Returns a handle to the event log.
    pub fn log(&self) -> Arc<SledLog> {
        Arc::clone(&self.log)
    }

    /// Returns a handle to the key store.
    pub fn keys(&self) -> Arc<SledKeys> {
        Arc::clone(&self.keys)
    }

    /// Stops the writer after the commits already queued, then flushes.
    ///
    /// Appends through handles still alive fail with `Error::Closed` afterwards.
    /// An index cleanup still running stops after its current batch; the
    /// next start goes on with it.
    pub async fn close(self) -> Result<()> {
        if let Some(cleaner) = self.cleaner {
            cleaner.stop().await;
        }
        self.stop.notify_one();
        if let Err(e) = self.writer.await {
            tracing::error!(error = %e, "event log writer ended abnormally");
        }
        flush(&self.db).await?;
        Ok(())
    }
}

/// The bound of sled's page cache unless configured (sled's own default
/// is 1 GiB, which a start that reads the whole log fills): the pages the
/// writer and recent reads touch, not the whole log, which the projection
/// holds folded in memory.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// How long `open` waits for the directory's lock to be released.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens the sled database of `dir`, waiting up to [`LOCK_WAIT`] for its
/// file lock: sled 0.34 releases it only when its I/O threads have let go of
/// a dropped database, a moment after the drop, so an open right after a
/// close in the same process could otherwise find the directory locked. A
/// directory another live process holds still fails, after the wait.
pub(crate) fn open_db(dir: &Path, cache_bytes: u64) -> Result<::sled::Db> {
    let started = std::time::Instant::now();
    loop {
        let config = ::sled::Config::new().path(dir).cache_capacity(cache_bytes);
        match config.open() {
            Err(::sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

/// Flushes to disk on a blocking thread and returns once the data is durable.
///
/// sled 0.34's `flush_async` never wakes some of its callers when several
/// await it at once (spacejam/sled#1308, fixed only on an unreleased branch),
/// which hung the server under load; the blocking flush gives the same
/// durability without that lost wake-up.
async fn flush(tree: &::sled::Tree) -> Result<()> {
    let tree = tree.clone();
    tokio::task::spawn_blocking(move || tree.flush())
        .await
        .map_err(|e| Error::storage(format!("the flush task failed: {e}")))??;
    Ok(())
}

/// The free space of the data directory's file system.
#[derive(Debug, Clone)]
struct Space {
    dir: PathBuf,
}

impl Space {
    /// Fails with `StorageFull` when less than `MIN_FREE_BYTES` are free.
    fn check(&self) -> Result<()> {
        match fs2::available_space(&self.dir) {
            Ok(free) if free < MIN_FREE_BYTES => {
                tracing::warn!(
                    free,
                    needed = MIN_FREE_BYTES,
                    "the data directory's file system is nearly full; refusing writes"
                );
                Err(Error::StorageFull)
            }
            // A file system that cannot say is left to report its own errors.
            Ok(_) | Err(_) => Ok(()),
        }
    }

    /// Tells a full disk apart from sled refusing writes after an earlier
    /// failure, which only a restart clears.
    fn explain(&self, e: Error) -> Error {
        match e {
            Error::StorageFull if self.check().is_ok() => Error::storage(
                "sled stopped accepting writes after a failed disk write; restart the server",
            ),
            other => other,
        }
    }
}

/// The sled event log; cheap to share as `Arc<dyn EventLog>`.
#[derive(Debug)]
pub struct SledLog {
    tree: ::sled::Tree,
    streams: SharedStreams,
    tx: mpsc::Sender<Pending>,
    head: Arc<watch::Sender<u64>>,
    log_id: String,
    #[cfg(test)]
    probe: Arc<Probe>,
}

#[async_trait::async_trait]
impl EventLog for SledLog {
    async fn append(&self, commit: Commit) -> Result<Vec<Envelope>> {
        super::check_shape(&commit)?;
        let (reply, replied) = oneshot::channel();
        self.tx
            .send(Pending { commit, reply })
            .await
            .map_err(|_| Error::Closed)?;
        replied.await.map_err(|_| Error::Closed)?
    }

    fn head(&self) -> u64 {
        *self.head.borrow()
    }

    async fn read(&self, from: u64, max: usize) -> Result<Vec<Envelope>> {
        let Some((from, last)) = super::read_range(from, max, self.head()) else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        let mut expected = from;
        for item in self.tree.range(record_key(from)..=record_key(last)) {
            let (key, value) = item?;
            let position = record_position(&key).filter(|p| *p == expected);
            let Some(position) = position else {
                return Err(missing(expected));
            };
            records.push(codec::decode_verified(&value, position)?);
            expected += 1;
        }
        if expected <= last {
            return Err(missing(expected));
        }
        Ok(records)
    }

    async fn read_stream(&self, stream: &str, up_to: u64) -> Result<Vec<Envelope>> {
        let positions = self
            .streams
            .read()
            .positions(stream, up_to.min(self.head()));
        let mut records = Vec::with_capacity(positions.len());
        for (version, position) in (1u64..).zip(positions) {
            let Some(value) = self.tree.get(record_key(position))? else {
                return Err(missing(position));
            };
            let env = codec::decode_verified(&value, position)?;
            if env.stream != stream || env.stream_version != version {
                return Err(Error::Corrupt {
                    position,
                    reason: format!(
                        "the record is not version {version} of stream {stream:?}, as the index built at start says"
                    ),
                });
            }
            records.push(env);
        }
        Ok(records)
    }

    async fn stream_version(&self, stream: &str) -> Result<u64> {
        // Not past the durable head: the index may already hold a version
        // whose flush has not returned yet.
        Ok(self.streams.read().version_at(stream, self.head()))
    }

    async fn find_request(&self, actor: &str, request_id: &str) -> Result<Option<RequestRecord>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let key = super::request_key(actor, request_id);
        let Some(value) = self.tree.get(prefixed(REQUEST, &key))? else {
            return Ok(None);
        };
        let record = decode_request(&key, &value)?;
        Ok((record.last_position <= self.head()).then_some(record))
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn log_id(&self) -> &str {
        &self.log_id
    }
}

impl SledLog {
    /// Returns every request record up to the durable head, in key order
    /// (for `registrar store copy`).
    pub fn request_records(&self) -> Result<Vec<RequestRecord>> {
        let mut records = Vec::new();
        for item in self.tree.scan_prefix([REQUEST]) {
            let (key, value) = item?;
            let name = key_name(&key).ok_or_else(|| malformed_key(0, "request"))?;
            let record = decode_request(name, &value)?;
            if record.last_position <= self.head() {
                records.push(record);
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
impl SledLog {
    /// Returns how many flushes the writer has done.
    pub(crate) fn flush_count(&self) -> u64 {
        self.probe.flushes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Makes the writer's next batch fail before it is applied.
    pub(crate) fn fail_next_apply(&self) {
        self.probe
            .fail_apply
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes the writer's next flush fail after its batch was applied.
    pub(crate) fn fail_next_flush(&self) {
        self.probe
            .fail_flush
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl From<::sled::Error> for Error {
    fn from(e: ::sled::Error) -> Self {
        match e {
            ::sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
                Error::StorageFull
            }
            other => Error::Storage {
                source: Box::new(other),
            },
        }
    }
}

fn record_key(position: u64) -> [u8; 9] {
    let mut key = [RECORD; 9];
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

fn record_position(key: &[u8]) -> Option<u64> {
    match key.split_first() {
        Some((&RECORD, rest)) => be_u64(rest),
        _ => None,
    }
}

fn prefixed(prefix: u8, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(prefix);
    key.extend_from_slice(name.as_bytes());
    key
}

fn key_name(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(1..)?).ok()
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

fn encode_request(record: &RequestRecord) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + record.fingerprint.len());
    value.extend_from_slice(&record.first_position.to_be_bytes());
    value.extend_from_slice(&record.last_position.to_be_bytes());
    value.extend_from_slice(&record.fingerprint);
    value
}

fn decode_request(request_id: &str, value: &[u8]) -> Result<RequestRecord> {
    let positions = value
        .get(..8)
        .and_then(be_u64)
        .zip(value.get(8..16).and_then(be_u64));
    let Some((first_position, last_position)) = positions else {
        return Err(malformed_key(0, "request"));
    };
    Ok(RequestRecord {
        request_id: request_id.to_owned(),
        first_position,
        last_position,
        fingerprint: value[16..].to_vec(),
    })
}

fn malformed_key(position: u64, what: &str) -> Error {
    Error::Corrupt {
        position,
        reason: format!("malformed {what} entry"),
    }
}

/// Edits a closed data directory's raw log, to simulate damage.
#[cfg(test)]
pub(crate) fn tamper_record(
    dir: &Path,
    position: u64,
    edit: impl FnOnce(Vec<u8>) -> Option<Vec<u8>>,
) {
    let db = open_db(dir, DEFAULT_CACHE_BYTES).unwrap();
    let tree = db.open_tree(LOG_TREE).unwrap();
    let key = record_key(position);
    let record = tree
        .get(key)
        .unwrap()
        .expect("record to tamper with exists");
    match edit(record.to_vec()) {
        Some(bytes) => tree.insert(key, bytes).unwrap(),
        None => tree.remove(key).unwrap(),
    };
    db.flush().unwrap();
}

#[cfg(test)]
mod tests;
