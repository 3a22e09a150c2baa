//! The sled log's checks at open: every record, position, checksum,
//! stream version and request entry (its metadata and format are
//! `format.rs`'s). The pass over the records builds the stream index the
//! log keeps in memory (`streams.rs`).

use std::sync::mpsc::SyncSender;

use super::format::Found;
use super::streams::Streams;
use super::{
    be_u64, decode_request, key_name, malformed_key, record_position, Envelope, Error, Result,
    RECORD, REQUEST, VERSION,
};
use crate::store::codec;

/// Records the scanning thread hands to the folding one at a time.
const BATCH: usize = 1024;
/// Batches in flight between the two threads.
const BATCHES: usize = 4;

/// Verifies every record and the entries derived from them, handing each
/// verified record to `fold` in log order; returns the head and the stream
/// index. A log of format 1 must hold one `v` key per stream, naming its
/// last version; one of a later format none. The `i` keys of formats 1
/// to 3 are not read: the records say all they said, and the upgrade
/// removes them.
///
/// Two threads share the pass over the records: one reads them in order
/// and checks each on its own (position, checksum, decoding), the calling
/// one checks the stream versions across records, indexes and folds. The
/// first fault in log order is the one reported.
pub(super) fn verify(
    tree: &::sled::Tree,
    fold: &mut dyn FnMut(&Envelope) -> Result<()>,
    found: Found,
) -> Result<(u64, Streams)> {
    let mut streams = Streams::default();
    let mut head = 0;
    let (tx, rx) = std::sync::mpsc::sync_channel(BATCHES);
    std::thread::scope(|scope| {
        scope.spawn(move || scan_records(tree, &tx));
        let rx = rx;
        // The scanner ends when it has sent everything (dropping its
        // sender ends this loop) or when this side returns early and drops
        // the receiver.
        for batch in rx.iter() {
            for env in batch? {
                if !streams.push_next(&env.stream, env.stream_version, env.position) {
                    return Err(Error::Corrupt {
                        position: env.position,
                        reason: format!(
                            "stream {:?} goes from version {} to {}",
                            env.stream,
                            streams.version(&env.stream),
                            env.stream_version
                        ),
                    });
                }
                fold(&env)?;
                head = env.position;
            }
        }
        Ok(())
    })?;
    check_versions(tree, &streams, head, found.version_keys())?;

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
    streams.shrink_to_fit();
    Ok((head, streams))
}

/// Checks format 1's `v` keys (`version_keys`): one per stream with
/// records, naming its last version; other formats have none.
fn check_versions(
    tree: &::sled::Tree,
    streams: &Streams,
    head: u64,
    version_keys: bool,
) -> Result<()> {
    let mut recorded = 0usize;
    for item in tree.scan_prefix([VERSION]) {
        let (key, value) = item?;
        let stream = key_name(&key).ok_or_else(|| malformed_key(head, "version"))?;
        if !version_keys {
            return Err(Error::Corrupt {
                position: head,
                reason: format!(
                    "stream {stream:?} has a version key, which formats after 1 do not write"
                ),
            });
        }
        let version = be_u64(&value).ok_or_else(|| malformed_key(head, "version"))?;
        let Some(position) = streams.last_position(stream) else {
            return Err(Error::Corrupt {
                position: head,
                reason: format!("stream {stream:?} has a version but no record"),
            });
        };
        let last = streams.version(stream);
        if version != last {
            return Err(Error::Corrupt {
                position,
                reason: format!(
                    "stream {stream:?} is recorded at version {version} but its last record is version {last}"
                ),
            });
        }
        recorded += 1;
    }
    if version_keys && recorded != streams.len() {
        // Each key names a stream with records, once: some stream has none.
        for item in tree.scan_prefix([RECORD]) {
            let (key, value) = item?;
            let position = record_position(&key).ok_or_else(|| malformed_key(head, "record"))?;
            let env = codec::decode_verified(&value, position)?;
            if !tree.contains_key(super::prefixed(VERSION, &env.stream))? {
                return Err(Error::Corrupt {
                    position: streams.last_position(&env.stream).unwrap_or(position),
                    reason: format!("stream {:?} has records but no version", env.stream),
                });
            }
        }
    }
    Ok(())
}

/// Reads the records in position order and checks each on its own: no
/// gap, its checksum, its decoding. Sends them in batches; a fault is sent
/// after the records before it.
fn scan_records(tree: &::sled::Tree, tx: &SyncSender<Result<Vec<Envelope>>>) {
    let mut batch = Vec::with_capacity(BATCH);
    for (expected, item) in (1u64..).zip(tree.scan_prefix([RECORD])) {
        match check_record(item, expected) {
            Ok(env) => batch.push(env),
            Err(e) => {
                let _ = tx.send(Ok(batch));
                let _ = tx.send(Err(e));
                return;
            }
        }
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.send(Ok(full)).is_err() {
                return;
            }
        }
    }
    let _ = tx.send(Ok(batch));
}

/// Checks the record expected at `expected` on its own.
fn check_record(
    item: ::sled::Result<(::sled::IVec, ::sled::IVec)>,
    expected: u64,
) -> Result<Envelope> {
    let (key, value) = item?;
    let position = record_position(&key).ok_or_else(|| malformed_key(expected, "record"))?;
    if position != expected {
        return Err(Error::Corrupt {
            position: expected,
            reason: format!("record is missing (the next one is at position {position})"),
        });
    }
    codec::decode_verified(&value, position)
}
