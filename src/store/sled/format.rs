//! The formats of a sled data directory, and the upgrade of an older one
//! to the format this build writes, at open.
//!
//! - Format 1: a `v` key per stream with its last version, and the data
//!   keys in a `keys` tree of their own, written with the events in a sled
//!   transaction over both trees.
//! - Format 2: no `v` keys (a stream's version is its last index entry's).
//! - Format 3: the data keys in the `log` tree under their own prefixes
//!   (`k`, `w`), so that a commit and its data keys are one plain batch on
//!   one tree.
//! - Format 4, written now: no stream index on disk. Formats 1 to 3 wrote
//!   an `i` key per event (stream, version → position), half the keys of
//!   the tree, which sled keeps bookkeeping for in memory and which each
//!   write had to insert; the index is now built in memory at open
//!   (`streams.rs`), from the records, which hold the same facts.
//!
//! A start upgrades any older format to format 4 once the log is verified.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use super::{
    prefixed, Error, Result, SledLog, Space, DATA_KEY, FORMAT, INDEX, KEYS_META, KEYS_TREE, META,
    VERSION,
};

/// The format a directory was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Format 1: `v` keys, the `keys` tree and the stream index.
    VersionKeys,
    /// Format 2: the `keys` tree and the stream index.
    KeysTree,
    /// Format 3: the stream index.
    IndexKeys,
    /// The format this build writes.
    Current,
}

impl Found {
    /// Whether the log holds a `v` key per stream.
    pub(super) fn version_keys(self) -> bool {
        self == Found::VersionKeys
    }

    /// Whether the data keys are in the `keys` tree.
    fn keys_tree(self) -> bool {
        matches!(self, Found::VersionKeys | Found::KeysTree)
    }

    /// The format's number.
    fn number(self) -> u8 {
        match self {
            Found::VersionKeys => 1,
            Found::KeysTree => 2,
            Found::IndexKeys => 3,
            Found::Current => 4,
        }
    }
}

/// Creates the log's metadata on first open, or checks it; returns the
/// log's id and the format it was found in.
pub(super) fn init_meta(tree: &::sled::Tree) -> Result<(String, Found)> {
    let format = tree.get(prefixed(META, "format"))?;
    let log_id = tree.get(prefixed(META, "log_id"))?;
    match (format, log_id) {
        (Some(format), Some(log_id)) => {
            let found = match &*format {
                f if f == FORMAT => Found::Current,
                b"3" => Found::IndexKeys,
                b"2" => Found::KeysTree,
                b"1" => Found::VersionKeys,
                _ => {
                    return Err(Error::UnsupportedFormat {
                        found: String::from_utf8_lossy(&format).into_owned(),
                        reads: "formats \"1\" to \"4\" of the sled log",
                    })
                }
            };
            let log_id = String::from_utf8(log_id.to_vec()).map_err(|_| Error::Corrupt {
                position: 0,
                reason: "log id is not utf-8".into(),
            })?;
            Ok((log_id, found))
        }
        (None, None) => {
            if tree.first()?.is_some() {
                return Err(Error::Corrupt {
                    position: 0,
                    reason: "log holds data but no metadata".into(),
                });
            }
            let log_id = uuid::Uuid::new_v4().to_string();
            let mut batch = ::sled::Batch::default();
            batch.insert(prefixed(META, "format"), FORMAT);
            batch.insert(prefixed(META, "log_id"), log_id.as_bytes());
            tree.apply_batch(batch)?;
            Ok((log_id, Found::Current))
        }
        _ => Err(Error::Corrupt {
            position: 0,
            reason: "log metadata is incomplete".into(),
        }),
    }
}

/// Entries copied or removed per batch.
const COPY_BATCH: usize = 4096;

/// Brings a verified log of an older format to the current one:
///
/// 1. formats 1 and 2: copies every entry of the `keys` tree into the
///    log's tree (data keys under `k`, the key store's meta under `w`), in
///    batches, after removing from the log's tree any such copy the `keys`
///    tree no longer holds (left by an earlier upgrade cut short, if an
///    older build wrote to the directory since);
/// 2. in one batch, removes format 1's `v` keys and records the format,
///    then flushes: a crash before the flush leaves the old format, whole,
///    which this build upgrades again and an older build still reads;
/// 3. drops the old `keys` tree.
///
/// The stream index's `i` keys are left to [`IndexCleaner`], which
/// removes them while the server serves. A crash after step 2 leaves a
/// current log with what is still to remove, and every start of the
/// current format finishes it: it drops a `keys` tree once it has checked
/// that the log's tree holds each of its entries (anything else refuses
/// the start), and cleans the `i` keys away. Until step 2 the copies of
/// step 1 are never read.
pub(super) fn upgrade(db: &::sled::Db, tree: &::sled::Tree, found: Found) -> Result<()> {
    if found == Found::Current {
        return drop_keys_tree(db, tree);
    }
    let moved = if found.keys_tree() {
        move_keys_tree(db, tree)?
    } else {
        0
    };
    let mut batch = ::sled::Batch::default();
    let mut version_keys = 0u64;
    for item in tree.scan_prefix([VERSION]) {
        let (key, _) = item?;
        batch.remove(key);
        version_keys += 1;
    }
    batch.insert(prefixed(META, "format"), FORMAT);
    tree.apply_batch(batch)?;
    db.flush()?;
    if found.keys_tree() {
        db.drop_tree(KEYS_TREE)?;
    }
    tracing::info!(
        from = found.number(),
        to = Found::Current.number(),
        version_keys,
        key_store_entries = moved,
        "data directory upgraded (data keys beside the log, the stream index in memory)"
    );
    Ok(())
}

/// Removes the `i` keys of the stream index formats 1 to 3 kept on disk,
/// on a thread of its own while the server serves: a million of them take
/// sled about seven seconds, which a start would otherwise wait for. No
/// reader or writer touches them. Each batch is a plain sled batch beside
/// the writer's, made durable by the writer's next flush, sled's own or
/// the cleaner's last; a start after a crash removes what is left.
#[derive(Debug)]
pub(super) struct IndexCleaner {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl IndexCleaner {
    /// Starts removing the `i` keys of `log`'s tree, when it has any. The
    /// thread holds the log for one batch at a time, and ends, leaving
    /// what is left to the next start, once every handle to the log is
    /// dropped or when it is stopped.
    pub(super) fn start(log: &Arc<SledLog>, space: Space) -> Result<Option<Self>> {
        if log.tree.scan_prefix([INDEX]).next().is_none() {
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(log);
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("index-cleanup".into())
            .spawn(move || match remove_index(&weak, &stopped, &space) {
                Ok((removed, true)) => tracing::info!(
                    index_keys = removed,
                    "removed the stream index older formats kept on disk"
                ),
                Ok((removed, false)) => tracing::info!(
                    index_keys = removed,
                    "stopped removing the on-disk stream index; the next start goes on"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "removing the on-disk stream index failed; the next start tries again"
                ),
            })
            .map_err(|e| Error::storage(format!("cannot start the index cleanup: {e}")))?;
        Ok(Some(Self { stop, thread }))
    }

    /// Stops it after its current batch and waits for it.
    pub(super) async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.finish().await;
    }

    /// Waits for it to end.
    pub(super) async fn finish(self) {
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
    }
}

/// The cleaner's loop: batches of `i` keys, each read before it is
/// applied; returns how many it removed and whether none is left.
fn remove_index(log: &Weak<SledLog>, stop: &AtomicBool, space: &Space) -> Result<(u64, bool)> {
    let mut removed = 0u64;
    let mut from = vec![INDEX];
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok((removed, false));
        }
        let Some(log) = log.upgrade() else {
            return Ok((removed, false));
        };
        // A failed disk write stops sled for good: leave the rest to a
        // start with room.
        space.check()?;
        let mut batch = ::sled::Batch::default();
        let (mut last, mut in_batch) = (None, 0u64);
        for item in log.tree.range(from.as_slice()..).take(COPY_BATCH) {
            let (key, _) = item?;
            if key.first() != Some(&INDEX) {
                break;
            }
            batch.remove(key.clone());
            last = Some(key);
            in_batch += 1;
        }
        let Some(last) = last else {
            log.tree.flush()?;
            return Ok((removed, true));
        };
        log.tree.apply_batch(batch)?;
        removed += in_batch;
        from = last.to_vec();
        from.push(0);
    }
}

/// Copies the `keys` tree of formats 1 and 2 into the log's tree, in
/// batches; returns how many entries it copied. The tree is dropped only
/// once the new format is recorded.
fn move_keys_tree(db: &::sled::Db, tree: &::sled::Tree) -> Result<u64> {
    let keys_tree = db.open_tree(KEYS_TREE)?;
    let mut stale = ::sled::Batch::default();
    for prefix in [DATA_KEY, KEYS_META] {
        for item in tree.scan_prefix([prefix]) {
            let (key, _) = item?;
            if !keys_tree.contains_key(old_key(&key))? {
                stale.remove(key);
            }
        }
    }
    tree.apply_batch(stale)?;
    let mut batch = ::sled::Batch::default();
    let (mut moved, mut in_batch) = (0u64, 0);
    for item in keys_tree.iter() {
        let (key, value) = item?;
        batch.insert(moved_key(&key)?, value);
        (moved, in_batch) = (moved + 1, in_batch + 1);
        if in_batch == COPY_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    tree.apply_batch(batch)?;
    Ok(moved)
}

/// The old `keys` tree's key for a key store entry of the log's tree.
fn old_key(key: &[u8]) -> Vec<u8> {
    let mut old = key.to_vec();
    if old.first() == Some(&KEYS_META) {
        old[0] = b'm';
    }
    old
}

/// The log tree's key for an entry of the old `keys` tree.
fn moved_key(key: &[u8]) -> Result<Vec<u8>> {
    let mut moved = key.to_vec();
    match moved.first_mut() {
        Some(&mut DATA_KEY) => {}
        Some(prefix @ &mut b'm') => *prefix = KEYS_META,
        _ => {
            return Err(Error::Corrupt {
                position: 0,
                reason: "the key store holds an entry of no known kind".into(),
            })
        }
    }
    Ok(moved)
}

/// Drops the `keys` tree an upgrade left beside the current log when it
/// was cut short before the drop, once the log's tree is found to hold
/// each of its entries.
fn drop_keys_tree(db: &::sled::Db, tree: &::sled::Tree) -> Result<()> {
    if !db
        .tree_names()
        .iter()
        .any(|name| &**name == KEYS_TREE.as_bytes())
    {
        return Ok(());
    }
    for item in db.open_tree(KEYS_TREE)?.iter() {
        let (key, value) = item?;
        if tree.get(moved_key(&key)?)?.as_ref() != Some(&value) {
            return Err(Error::Corrupt {
                position: 0,
                reason:
                    "a `keys` tree beside a log of format 4 holds an entry the log's tree does not"
                        .into(),
            });
        }
    }
    db.drop_tree(KEYS_TREE)?;
    Ok(())
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
