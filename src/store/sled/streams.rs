//! The sled log's stream index, in memory: the position of each version of
//! each stream. Format 4 keeps no index on disk (formats 1 to 3 wrote an
//! `i` key per event, half the keys of the tree): a start builds it in its
//! pass over the records (`verify.rs`), the writer extends it as it accepts
//! commits, and readers find a stream's records in it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Each stream's records: the positions of its versions 1 to its last, in
/// order. It may run ahead of the durable head (a group accepted but not
/// yet flushed); readers bound what they take by the head.
#[derive(Debug, Default)]
pub(super) struct Streams {
    positions: HashMap<String, Vec<u64>>,
}

impl Streams {
    /// The last version of `stream` accepted (0 when it has none).
    pub(super) fn version(&self, stream: &str) -> u64 {
        self.positions.get(stream).map_or(0, |p| p.len() as u64)
    }

    /// The position of the last version of `stream`, if it has one.
    pub(super) fn last_position(&self, stream: &str) -> Option<u64> {
        self.positions.get(stream).and_then(|p| p.last().copied())
    }

    /// The version of `stream` that the log up to `head` holds.
    pub(super) fn version_at(&self, stream: &str, head: u64) -> u64 {
        self.positions
            .get(stream)
            .map_or(0, |p| p.partition_point(|&at| at <= head) as u64)
    }

    /// The positions of the versions of `stream` up to `head`, in order.
    pub(super) fn positions(&self, stream: &str, head: u64) -> Vec<u64> {
        let Some(positions) = self.positions.get(stream) else {
            return Vec::new();
        };
        positions[..positions.partition_point(|&at| at <= head)].to_vec()
    }

    /// Records the next version of `stream` at `position`, past every
    /// position recorded; returns that version. The stream's name is copied
    /// only the first time.
    pub(super) fn push(&mut self, stream: &str, position: u64) -> u64 {
        let positions = match self.positions.get_mut(stream) {
            Some(positions) => positions,
            None => self.positions.entry(stream.to_owned()).or_default(),
        };
        positions.push(position);
        positions.len() as u64
    }

    /// Records `position` as version `version` of `stream` if that is the
    /// stream's next version (one lookup, for the start's pass over every
    /// record); returns whether it was.
    pub(super) fn push_next(&mut self, stream: &str, version: u64, position: u64) -> bool {
        match self.positions.get_mut(stream) {
            Some(positions) if positions.len() as u64 + 1 == version => {
                positions.push(position);
                true
            }
            Some(_) => false,
            None if version == 1 => {
                self.positions.insert(stream.to_owned(), vec![position]);
                true
            }
            None => false,
        }
    }

    /// Forgets every version recorded past `head`: those of a group that a
    /// failed write left out of the tree.
    pub(super) fn truncate(&mut self, head: u64) {
        self.positions.retain(|_, positions| {
            let kept = positions.partition_point(|&at| at <= head);
            positions.truncate(kept);
            kept > 0
        });
    }

    /// Gives back the room each stream's positions hold beyond its
    /// versions. A vector doubles as it grows, so the start's pass leaves
    /// most streams of a large log with up to twice the room they use
    /// (ten versions in room for sixteen): a third of the index.
    pub(super) fn shrink_to_fit(&mut self) {
        for positions in self.positions.values_mut() {
            positions.shrink_to_fit();
        }
        self.positions.shrink_to_fit();
    }

    /// How many streams have records.
    pub(super) fn len(&self) -> usize {
        self.positions.len()
    }
}

/// The index shared by the writer and the readers of one log.
#[derive(Debug, Clone, Default)]
pub(super) struct SharedStreams(Arc<RwLock<Streams>>);

impl SharedStreams {
    pub(super) fn new(streams: Streams) -> Self {
        Self(Arc::new(RwLock::new(streams)))
    }

    /// Reads it. A panic while it was held cannot leave it half-changed:
    /// each change is one push or one truncation.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Streams> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes it (the writer only).
    pub(super) fn write(&self) -> RwLockWriteGuard<'_, Streams> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_counted_and_bounded_by_the_head() {
        let mut streams = Streams::default();
        assert_eq!(streams.push("a", 1), 1);
        assert_eq!(streams.push("ab", 2), 1);
        assert_eq!(streams.push("a", 3), 2);
        assert_eq!(streams.push("a", 7), 3);
        assert_eq!(streams.version("a"), 3);
        assert_eq!(streams.version("ab"), 1);
        assert_eq!(streams.version("b"), 0);
        assert_eq!(streams.last_position("a"), Some(7));
        assert_eq!(streams.version_at("a", 6), 2);
        assert_eq!(streams.version_at("a", 7), 3);
        assert_eq!(streams.version_at("a", 0), 0);
        assert_eq!(streams.positions("a", 6), vec![1, 3]);
        assert_eq!(streams.positions("a", 100), vec![1, 3, 7]);
        assert!(streams.positions("b", 100).is_empty());
        assert_eq!(streams.len(), 2);
    }

    #[test]
    fn shrinking_keeps_every_version_and_gives_back_the_room() {
        let mut streams = Streams::default();
        for position in 1..=10 {
            streams.push("a", position * 2);
        }
        streams.push("b", 21);
        let room = |s: &Streams| s.positions.values().map(Vec::capacity).sum::<usize>();
        assert!(room(&streams) > 11);
        streams.shrink_to_fit();
        assert_eq!(room(&streams), 11);
        assert_eq!(streams.version("a"), 10);
        assert_eq!(
            streams.positions("a", 100),
            (1..=10).map(|p| p * 2).collect::<Vec<_>>()
        );
        assert_eq!(streams.push("a", 30), 11);
        assert_eq!(streams.version_at("b", 21), 1);
    }

    #[test]
    fn only_a_streams_next_version_is_pushed() {
        let mut streams = Streams::default();
        assert!(!streams.push_next("a", 2, 1));
        assert!(streams.push_next("a", 1, 1));
        assert!(!streams.push_next("a", 1, 2));
        assert!(!streams.push_next("a", 3, 2));
        assert!(streams.push_next("a", 2, 5));
        assert_eq!(streams.positions("a", 10), vec![1, 5]);
        assert_eq!(streams.len(), 1);
    }

    #[test]
    fn truncation_forgets_what_came_after_the_head() {
        let mut streams = Streams::default();
        for (stream, position) in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)] {
            streams.push(stream, position);
        }
        streams.truncate(3);
        assert_eq!(streams.version("a"), 2);
        assert_eq!(streams.version("b"), 1);
        // A stream whose only versions came after is gone, and starts over.
        assert_eq!(streams.version("c"), 0);
        assert_eq!(streams.len(), 2);
        assert_eq!(streams.push("c", 4), 1);
        assert_eq!(streams.positions("a", 100), vec![1, 3]);
    }
}
