//! The formats of a sled data directory, and the upgrade of an older one
//! to the format this build writes, at open.
//!
//! - Format 1: a `v` key per stream with its last version, and the data
//!   keys in a `keys` tree of their own, written with the events in a sled
//!   transaction over both trees.
//! - Format 2: no `v` keys (a stream's version is its last index entry's).
//! - Format 3, written now: the data keys in the `log` tree under their own
//!   prefixes (`k`, `w`), so that a commit and its data keys are one plain
//!   batch on one tree.

use super::{prefixed, Error, Result, DATA_KEY, FORMAT, KEYS_META, KEYS_TREE, META, VERSION};

/// The format a directory was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Format 1: `v` keys, and the `keys` tree.
    VersionKeys,
    /// Format 2: the `keys` tree.
    KeysTree,
    /// The format this build writes.
    Current,
}

impl Found {
    /// Whether the log holds a `v` key per stream.
    pub(super) fn version_keys(self) -> bool {
        self == Found::VersionKeys
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
                b"2" => Found::KeysTree,
                b"1" => Found::VersionKeys,
                _ => {
                    return Err(Error::UnsupportedFormat {
                        found: String::from_utf8_lossy(&format).into_owned(),
                        reads: "formats \"1\", \"2\" and \"3\" of the sled log",
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

/// Brings a verified log of an older format to the current one in one
/// atomic write (a sled transaction over the `log` and `keys` trees),
/// which the flush after the start makes durable: removes format 1's `v`
/// keys, moves every entry of the `keys` tree into the `log` tree (data
/// keys under `k`, the key store's meta under `w`), and records the
/// format. A crash before the flush leaves the old format, upgraded again
/// at the next start. The emptied `keys` tree is then dropped; a start
/// that finds it empty beside a current log (a crash in between) drops it
/// then, and one that finds it holding anything refuses to start.
pub(super) fn upgrade(db: &::sled::Db, tree: &::sled::Tree, found: Found) -> Result<()> {
    use ::sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
    if found == Found::Current {
        return drop_keys_tree(db);
    }
    let keys_tree = db.open_tree(KEYS_TREE)?;
    let mut log = ::sled::Batch::default();
    let mut keys = ::sled::Batch::default();
    let mut version_keys = 0u64;
    for item in tree.scan_prefix([VERSION]) {
        let (key, _) = item?;
        log.remove(key);
        version_keys += 1;
    }
    let mut moved = 0u64;
    for item in keys_tree.iter() {
        let (key, value) = item?;
        let new_key = match key.first() {
            Some(&DATA_KEY) => key.to_vec(),
            Some(&b'm') => {
                let mut k = key.to_vec();
                k[0] = KEYS_META;
                k
            }
            _ => {
                return Err(Error::Corrupt {
                    position: 0,
                    reason: "the key store holds an entry of no known kind".into(),
                })
            }
        };
        log.insert(new_key, value);
        keys.remove(key);
        moved += 1;
    }
    log.insert(prefixed(META, "format"), FORMAT);
    (tree, &keys_tree)
        .transaction(|(log_tree, keys_tree)| {
            log_tree.apply_batch(&log)?;
            keys_tree.apply_batch(&keys)?;
            Ok::<(), ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            TransactionError::Storage(e) => Error::from(e),
            TransactionError::Abort(()) => Error::storage("the format upgrade aborted"),
        })?;
    db.flush()?;
    drop(keys_tree);
    db.drop_tree(KEYS_TREE)?;
    tracing::info!(
        from = if found.version_keys() { 1 } else { 2 },
        version_keys,
        key_store_entries = moved,
        "data directory upgraded to format 3 (the data keys beside the log in one tree)"
    );
    Ok(())
}

/// Drops the `keys` tree a current log may still have beside it, empty,
/// after a crash between an upgrade and the drop.
fn drop_keys_tree(db: &::sled::Db) -> Result<()> {
    if !db
        .tree_names()
        .iter()
        .any(|name| &**name == KEYS_TREE.as_bytes())
    {
        return Ok(());
    }
    if !db.open_tree(KEYS_TREE)?.is_empty() {
        return Err(Error::Corrupt {
            position: 0,
            reason: "a `keys` tree holds data beside a log of format 3, which keeps its data keys in the log tree".into(),
        });
    }
    db.drop_tree(KEYS_TREE)?;
    Ok(())
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
