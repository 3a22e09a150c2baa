//! The sled log's checks at open: its metadata (log id, format) and every
//! record, position, checksum, stream version, index and request entry.

use std::collections::HashMap;

use super::{
    be_u64, decode_request, index_key, key_name, malformed_key, prefixed, record_position, Error,
    Result, WriterState, FORMAT, INDEX, META, RECORD, REQUEST, VERSION,
};
use crate::store::codec;

/// Creates the log's metadata on first open, or checks it.
pub(super) fn init_meta(tree: &::sled::Tree) -> Result<String> {
    let format = tree.get(prefixed(META, "format"))?;
    let log_id = tree.get(prefixed(META, "log_id"))?;
    match (format, log_id) {
        (Some(format), Some(log_id)) => {
            if &*format != FORMAT {
                return Err(Error::UnsupportedFormat {
                    found: String::from_utf8_lossy(&format).into_owned(),
                });
            }
            String::from_utf8(log_id.to_vec()).map_err(|_| Error::Corrupt {
                position: 0,
                reason: "log id is not utf-8".into(),
            })
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
            Ok(log_id)
        }
        _ => Err(Error::Corrupt {
            position: 0,
            reason: "log metadata is incomplete".into(),
        }),
    }
}

/// Verifies every record and the indexes derived from them; returns the state.
pub(super) fn verify(tree: &::sled::Tree) -> Result<WriterState> {
    // Each stream's last (version, position) seen so far.
    let mut last: HashMap<String, (u64, u64)> = HashMap::new();
    let mut expected = 1u64;
    for item in tree.scan_prefix([RECORD]) {
        let (key, value) = item?;
        let position = record_position(&key).ok_or_else(|| malformed_key(expected, "record"))?;
        if position != expected {
            return Err(Error::Corrupt {
                position: expected,
                reason: format!("record is missing (the next one is at position {position})"),
            });
        }
        let env = codec::decode_verified(&value, position)?;
        let previous = last.get(&env.stream).map_or(0, |(version, _)| *version);
        if env.stream_version != previous + 1 {
            return Err(Error::Corrupt {
                position,
                reason: format!(
                    "stream {:?} goes from version {previous} to {}",
                    env.stream, env.stream_version
                ),
            });
        }
        let indexed = tree.get(index_key(&env.stream, env.stream_version))?;
        if indexed.as_deref().and_then(be_u64) != Some(position) {
            return Err(Error::Corrupt {
                position,
                reason: format!(
                    "stream index of {:?} does not point to the record",
                    env.stream
                ),
            });
        }
        last.insert(env.stream, (env.stream_version, position));
        expected += 1;
    }
    let head = expected - 1;

    let mut versions = HashMap::new();
    for item in tree.scan_prefix([VERSION]) {
        let (key, value) = item?;
        let stream = key_name(&key).ok_or_else(|| malformed_key(head, "version"))?;
        let version = be_u64(&value).ok_or_else(|| malformed_key(head, "version"))?;
        match last.get(stream) {
            Some((recorded, _)) if *recorded == version => {}
            Some((recorded, position)) => {
                return Err(Error::Corrupt {
                    position: *position,
                    reason: format!(
                        "stream {stream:?} is recorded at version {version} but its last record is version {recorded}"
                    ),
                })
            }
            None => {
                return Err(Error::Corrupt {
                    position: head,
                    reason: format!("stream {stream:?} has a version but no record"),
                })
            }
        }
        versions.insert(stream.to_owned(), version);
    }
    if let Some((stream, (_, position))) = last.iter().find(|(s, _)| !versions.contains_key(*s)) {
        return Err(Error::Corrupt {
            position: *position,
            reason: format!("stream {stream:?} has records but no version"),
        });
    }

    let mut indexed = 0u64;
    for item in tree.scan_prefix([INDEX]) {
        item?;
        indexed += 1;
    }
    if indexed != head {
        return Err(Error::Corrupt {
            position: head,
            reason: format!("stream index holds {indexed} entries for {head} records"),
        });
    }

    for item in tree.scan_prefix([REQUEST]) {
        let (key, value) = item?;
        let request_id = key_name(&key).ok_or_else(|| malformed_key(head, "request"))?;
        let record = decode_request(request_id, &value)?;
        if record.first_position == 0
            || record.first_position > record.last_position
            || record.last_position > head
        {
            return Err(Error::Corrupt {
                position: record.last_position,
                reason: format!(
                    "request {request_id:?} records positions {}..={} past the head {head}",
                    record.first_position, record.last_position
                ),
            });
        }
    }
    Ok(WriterState { head, versions })
}
