//! The recent window: the last applied records, decoded, with what
//! watchers see of them, and an index of their changes by environment, so
//! that a watcher visits its own environment's changes only and a watcher
//! of a quiet environment never walks, nor reads from the log, the records
//! of the others.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::{Applied, Audience};
use crate::domain::event::Stream;

/// Recent records kept decoded, with what watchers see of them, for watch
/// cursors near the head, so that many watchers do not each read, decode,
/// fold and encode every record: at most this many records...
pub(super) const RECENT: usize = 8192;
/// ...and at most this many bytes of them (their encoded size), whichever
/// bound is reached first, so large records (CA bundles) cannot make the
/// window hold hundreds of MiB.
pub(super) const RECENT_BYTES: usize = 8 * 1024 * 1024;

/// The most recent applied records, contiguous by position.
#[derive(Debug, Default)]
pub(super) struct Window {
    pub(super) records: VecDeque<(Arc<Applied>, usize)>,
    pub(super) bytes: usize,
    /// The positions of the window's changes, by the environment whose
    /// watchers see them, in order.
    by_environment: HashMap<String, VecDeque<u64>>,
    /// The positions of the window's changes every environment's watchers
    /// see (the settings), in order.
    for_all: VecDeque<u64>,
    /// The position of the last change that left the window, by
    /// environment, and of the last one for all.
    left: HashMap<String, u64>,
    left_for_all: u64,
    /// The first position the window was given: before it, it knows
    /// nothing.
    since: u64,
}

impl Window {
    pub(super) fn push(&mut self, record: Applied, size: usize) {
        let position = record.recorded.position;
        if self.since == 0 {
            self.since = position;
        }
        match &record.watched {
            Some((Audience::Environment(env), _)) => match self.by_environment.get_mut(env) {
                Some(positions) => positions.push_back(position),
                None => {
                    self.by_environment
                        .insert(env.clone(), VecDeque::from([position]));
                }
            },
            Some((Audience::All, _)) => self.for_all.push_back(position),
            None => {}
        }
        self.records.push_back((Arc::new(record), size));
        self.bytes += size;
        while self.records.len() > RECENT || (self.bytes > RECENT_BYTES && self.records.len() > 1) {
            if let Some((gone, size)) = self.records.pop_front() {
                self.bytes -= size;
                self.forget(&gone);
            }
        }
    }

    /// Moves a record that left the window from the index to `left`.
    fn forget(&mut self, gone: &Applied) {
        let position = gone.recorded.position;
        match &gone.watched {
            Some((Audience::Environment(env), _)) => {
                if let Some(positions) = self.by_environment.get_mut(env) {
                    positions.pop_front();
                    if positions.is_empty() {
                        self.by_environment.remove(env);
                    }
                }
                match self.left.get_mut(env) {
                    Some(last) => *last = position,
                    None => {
                        self.left.insert(env.clone(), position);
                    }
                }
            }
            Some((Audience::All, _)) => {
                self.for_all.pop_front();
                self.left_for_all = position;
            }
            None => {}
        }
    }

    fn first(&self) -> Option<u64> {
        Some(self.records.front()?.0.recorded.position)
    }

    fn last(&self) -> Option<u64> {
        Some(self.records.back()?.0.recorded.position)
    }

    /// Whether the window can tell which records from `from` on are
    /// changes for `environment_id`: `from` is in the window or just past
    /// it, or before it with no change for that environment in between.
    fn knows(&self, environment_id: &str, from: u64) -> bool {
        let Some(first) = self.first() else {
            return false;
        };
        if from >= first {
            return true;
        }
        if from < self.since {
            return false;
        }
        let left = self.left.get(environment_id).copied().unwrap_or(0);
        left.max(self.left_for_all) < from
    }

    /// Hands `visit` the records from `from` on that are changes for
    /// `environment_id`'s watchers, in order, while it returns true (at
    /// most `max` of them). Returns the position the caller has passed:
    /// the last record handed over when `visit` stopped or `max` was
    /// reached, else the window's last; `None` when the window cannot tell
    /// (the caller reads the log instead).
    pub(super) fn visit_changes(
        &self,
        environment_id: &str,
        from: u64,
        max: usize,
        mut visit: impl FnMut(&Arc<Applied>) -> bool,
    ) -> Option<u64> {
        if !self.knows(environment_id, from) {
            return None;
        }
        let first = self.first()?;
        let last = self.last()?;
        let mut own = from_on(self.by_environment.get(environment_id), from);
        let mut all = from_on(Some(&self.for_all), from);
        let mut visited = 0;
        loop {
            let next = match (own.peek(), all.peek()) {
                (Some(a), Some(b)) if a < b => own.next(),
                (Some(_), Some(_)) | (None, Some(_)) => all.next(),
                (Some(_), None) => own.next(),
                (None, None) => break,
            };
            let Some(position) = next else { break };
            let index = usize::try_from(position - first).ok()?;
            let (record, _) = self.records.get(index)?;
            visited += 1;
            if !visit(record) || visited == max {
                return Some(position);
            }
        }
        Some(last.max(from.saturating_sub(1)))
    }

    /// The environments whose watchers see a change among the records
    /// after `after` up to `to`; `None` when every watcher is to be woken:
    /// a change for all (the settings), a token's record (no change, but a
    /// revocation ends streams), or records the window no longer holds.
    pub(super) fn environments_changed(&self, after: u64, to: u64) -> Option<HashSet<String>> {
        let first = self.first()?;
        let skip = usize::try_from(after.checked_add(1)?.checked_sub(first)?).ok()?;
        let mut environments = HashSet::new();
        for (record, _) in self.records.range(skip.min(self.records.len())..) {
            if record.recorded.position > to {
                break;
            }
            match &record.watched {
                Some((Audience::Environment(env), _)) if !environments.contains(env) => {
                    environments.insert(env.clone());
                }
                Some((Audience::Environment(_), _)) => {}
                Some((Audience::All, _)) => return None,
                None if record.recorded.stream == Stream::Tokens.name() => return None,
                None => {}
            }
        }
        Some(environments)
    }

    /// Whether a change for `environment_id`'s watchers came after
    /// `position`, or the window cannot tell.
    pub(super) fn changed_after(&self, environment_id: &str, position: u64) -> bool {
        if !self.knows(environment_id, position + 1) {
            return true;
        }
        let own = self
            .by_environment
            .get(environment_id)
            .and_then(VecDeque::back);
        let all = self.for_all.back();
        own.into_iter().chain(all).any(|p| *p > position)
    }
}

/// The positions from `from` on of an index's list.
fn from_on(
    positions: Option<&VecDeque<u64>>,
    from: u64,
) -> std::iter::Peekable<std::iter::Copied<std::collections::vec_deque::Iter<'_, u64>>> {
    let positions = positions.map_or(Default::default(), |p| {
        p.range(p.partition_point(|p| *p < from)..)
    });
    positions.copied().peekable()
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
