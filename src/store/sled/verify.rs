//! The sled log's checks at open: every record, position, checksum,
//! stream version, index and request entry (its metadata and format are
//! `format.rs`'s).

use std::collections::HashMap;
use std::sync::mpsc::SyncSender;

use super::{
    be_u64, decode_request, index_key, key_name, malformed_key, record_position, Envelope, Error,
    Result, WriterState, INDEX, RECORD, REQUEST, VERSION,
};
use crate::store::codec;

/// Records the scanning thread hands to the folding one at a time.
const BATCH: usize = 1024;
/// Batches in flight between the two threads.
const BATCHES: usize = 4;

/// Verifies every record and the indexes derived from them, handing each
/// verified record to `fold` in log order; returns the writer's state.
/// A log of format 1 (`version_keys`) must hold one `v` key per stream,
/// naming its last version; one of a later format none.
///
/// Two threads share the pass over the records: one reads them in order
/// and checks each on its own (position, checksum, decoding), the calling
/// one checks the stream versions across records and folds. The first
/// fault in log order is the one reported. The stream index is checked
/// after, in one pass of its own ([`check_index`]).
pub(super) fn verify(
    tree: &::sled::Tree,
    fold: &mut dyn FnMut(&Envelope) -> Result<()>,
    version_keys: bool,
) -> Result<WriterState> {
    let mut last: HashMap<String, Seen> = HashMap::new();
    // The number of the stream of each record, by position - 1.
    let mut owners: Vec<u32> = Vec::new();
    let (tx, rx) = std::sync::mpsc::sync_channel(BATCHES);
    std::thread::scope(|scope| {
        scope.spawn(move || scan_records(tree, &tx));
        let rx = rx;
        // The scanner ends when it has sent everything (dropping its
        // sender ends this loop) or when this side returns early and drops
        // the receiver.
        for batch in rx.iter() {
            for env in batch? {
                let position = env.position;
                let number = match last.get_mut(&env.stream) {
                    Some(seen) if env.stream_version == seen.version + 1 => {
                        seen.version = env.stream_version;
                        seen.position = position;
                        seen.number
                    }
                    None if env.stream_version == 1 => {
                        let number = u32::try_from(last.len()).map_err(|_| Error::Corrupt {
                            position,
                            reason: "the log holds more streams than a start can check".into(),
                        })?;
                        last.insert(env.stream.clone(), Seen::first(number, position));
                        number
                    }
                    seen => {
                        return Err(Error::Corrupt {
                            position,
                            reason: format!(
                                "stream {:?} goes from version {} to {}",
                                env.stream,
                                seen.map_or(0, |s| s.version),
                                env.stream_version
                            ),
                        })
                    }
                };
                fold(&env)?;
                owners.push(number);
            }
        }
        Ok(())
    })?;
    let head = owners.len() as u64;
    check_index(tree, &last, &owners)?;
    drop(owners);

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
        match last.get_mut(stream) {
            Some(seen) if seen.version == version && !seen.recorded => seen.recorded = true,
            Some(seen) => {
                return Err(Error::Corrupt {
                    position: seen.position,
                    reason: format!(
                        "stream {stream:?} is recorded at version {version} but its last record is version {}",
                        seen.version
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
    }
    if let Some((stream, seen)) = last.iter().find(|(_, seen)| version_keys && !seen.recorded) {
        return Err(Error::Corrupt {
            position: seen.position,
            reason: format!("stream {stream:?} has records but no version"),
        });
    }
    let versions = last
        .into_iter()
        .map(|(stream, seen)| (stream, seen.version))
        .collect();

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

/// A stream as the records show it.
struct Seen {
    /// Its number, in order of first appearance.
    number: u32,
    /// Its last version.
    version: u64,
    /// The position of its last record.
    position: u64,
    /// Whether its version entry was found.
    recorded: bool,
}

impl Seen {
    fn first(number: u32, position: u64) -> Self {
        Seen {
            number,
            version: 1,
            position,
            recorded: false,
        }
    }
}

/// Checks that the stream index holds exactly one entry per record, the
/// entry of version `v` of a stream pointing to that record.
///
/// One sequential pass over the index does it: a stream's entries come in
/// version order, and when they name versions 1 to its last, at rising
/// positions of records of that stream, they point to its records in order
/// (the record pass checked that its records carry versions 1 to its last
/// in position order). A start reads the index once instead of looking up
/// an entry per record in a B-tree larger than the page cache. When the
/// pass finds a fault, a lookup per record finds the record it concerns.
fn check_index(tree: &::sled::Tree, last: &HashMap<String, Seen>, owners: &[u32]) -> Result<()> {
    if index_in_order(tree, last, owners)? {
        return Ok(());
    }
    let head = owners.len() as u64;
    for item in tree.scan_prefix([RECORD]) {
        let (key, value) = item?;
        let position = record_position(&key).ok_or_else(|| malformed_key(head, "record"))?;
        let env = codec::decode_verified(&value, position)?;
        check_index_entry(tree, &env)?;
    }
    // Every record has its entry: the fault is an entry of no record.
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
    Ok(())
}

/// The sequential pass of [`check_index`]: whether the index is whole.
fn index_in_order(
    tree: &::sled::Tree,
    last: &HashMap<String, Seen>,
    owners: &[u32],
) -> Result<bool> {
    // The stream whose entries are being read: its name, its number and
    // last version, and the last entry's version and position.
    let mut stream: Vec<u8> = Vec::new();
    let mut current: Option<(u32, u64)> = None;
    let (mut version, mut position) = (0u64, 0u64);
    let mut streams = 0usize;
    for item in tree.scan_prefix([INDEX]) {
        let (key, value) = item?;
        let Some((name, entry_version)) = split_index_key(&key) else {
            return Ok(false);
        };
        let Some(entry_position) = be_u64(&value) else {
            return Ok(false);
        };
        if current.is_none() || name != stream.as_slice() {
            if current.is_some_and(|(_, last_version)| version != last_version) {
                return Ok(false);
            }
            let seen = std::str::from_utf8(name).ok().and_then(|n| last.get(n));
            let Some(seen) = seen else {
                return Ok(false);
            };
            stream.clear();
            stream.extend_from_slice(name);
            current = Some((seen.number, seen.version));
            (version, position) = (0, 0);
            streams += 1;
        }
        let Some((number, _)) = current else {
            return Ok(false);
        };
        let owner = usize::try_from(entry_position.wrapping_sub(1))
            .ok()
            .and_then(|i| owners.get(i));
        if entry_version != version + 1 || entry_position <= position || owner != Some(&number) {
            return Ok(false);
        }
        (version, position) = (entry_version, entry_position);
    }
    let whole = current.is_none_or(|(_, last_version)| version == last_version);
    Ok(whole && streams == last.len())
}

/// Splits a stream-index key into the stream's name and the version.
pub(super) fn split_index_key(key: &[u8]) -> Option<(&[u8], u64)> {
    let (&prefix, rest) = key.split_first()?;
    let split = rest.len().checked_sub(9)?;
    let (name, tail) = rest.split_at(split);
    (prefix == INDEX && tail[0] == 0).then_some(())?;
    Some((name, be_u64(&tail[1..])?))
}

/// Checks that the stream-index entry of `env` points to it.
fn check_index_entry(tree: &::sled::Tree, env: &Envelope) -> Result<()> {
    let indexed = tree.get(index_key(&env.stream, env.stream_version))?;
    if indexed.as_deref().and_then(be_u64) != Some(env.position) {
        return Err(Error::Corrupt {
            position: env.position,
            reason: format!(
                "stream index of {:?} does not point to the record",
                env.stream
            ),
        });
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
