//! Tests of the recent window and its index by environment.

use std::sync::OnceLock;

use super::*;
use crate::domain::event::{Event, Recorded, Stream};
use crate::projection::Change;

fn recorded(position: u64) -> Recorded {
    Recorded {
        position,
        stream: Stream::Tokens.name(),
        stream_version: position,
        time: std::time::SystemTime::UNIX_EPOCH,
        actor: "test".into(),
        request_id: String::new(),
        event: Event::TokenRevoked {
            token_id: format!("t{position}"),
        },
    }
}

/// A record at `position` whose change `audience`'s watchers see (none:
/// a record no watcher sees).
fn applied(position: u64, audience: Option<Audience>) -> Applied {
    Applied {
        recorded: recorded(position),
        watched: audience.map(|a| (a, Change::EnvironmentDeleted)),
        encoded: OnceLock::new(),
    }
}

fn env(id: &str) -> Option<Audience> {
    Some(Audience::Environment(id.into()))
}

/// The positions `visit_changes` hands over for `environment_id` from
/// `from` (at most `max`, all taken), and the position it returns.
fn changes(w: &Window, environment_id: &str, from: u64, max: usize) -> (Vec<u64>, Option<u64>) {
    let mut seen = Vec::new();
    let passed = w.visit_changes(environment_id, from, max, |a| {
        seen.push(a.recorded.position);
        true
    });
    (seen, passed)
}

#[test]
fn the_window_is_bounded_in_bytes_as_well_as_records() {
    let mut w = Window::default();
    let big = RECENT_BYTES / 4 + 1;
    for p in 1..=10 {
        w.push(applied(p, None), big);
    }
    assert_eq!(
        w.records.len(),
        3,
        "four records of a quarter would pass the bound"
    );
    assert!(w.bytes <= RECENT_BYTES);
    assert_eq!(w.records.front().unwrap().0.recorded.position, 8);
    // A record larger than the whole bound is still kept, alone.
    w.push(applied(11, None), RECENT_BYTES * 2);
    assert_eq!(w.records.len(), 1);
    // Small records: the record count bounds the window.
    let mut w = Window::default();
    for p in 1..=(RECENT as u64 + 5) {
        w.push(applied(p, None), 10);
    }
    assert_eq!(w.records.len(), RECENT);
}

#[test]
fn a_watcher_is_handed_its_environments_changes_and_the_settings_in_order() {
    let mut w = Window::default();
    let audiences = [
        env("a"),
        env("b"),
        Some(Audience::All),
        None,
        env("a"),
        env("b"),
    ];
    for (i, audience) in audiences.into_iter().enumerate() {
        w.push(applied(11 + i as u64, audience), 10);
    }
    assert_eq!(changes(&w, "a", 11, 100), (vec![11, 13, 15], Some(16)));
    assert_eq!(changes(&w, "b", 11, 100), (vec![12, 13, 16], Some(16)));
    assert_eq!(changes(&w, "a", 14, 100), (vec![15], Some(16)));
    // An environment with no change passes the whole window; so does a
    // cursor at the head.
    assert_eq!(changes(&w, "c", 11, 100), (vec![13], Some(16)));
    assert_eq!(changes(&w, "c", 14, 100), (vec![], Some(16)));
    assert_eq!(changes(&w, "a", 17, 100), (vec![], Some(16)));
    // At most `max`, and it stops where the visitor stops.
    assert_eq!(changes(&w, "a", 11, 2), (vec![11, 13], Some(13)));
    let mut seen = Vec::new();
    let passed = w.visit_changes("a", 11, 100, |a| {
        seen.push(a.recorded.position);
        a.recorded.position < 13
    });
    assert_eq!((seen, passed), (vec![11, 13], Some(13)));
}

#[test]
fn a_quiet_environment_passes_what_left_the_window_and_a_busy_one_reads_the_log() {
    let mut w = Window::default();
    w.push(applied(1, env("a")), 10);
    w.push(applied(2, Some(Audience::All)), 10);
    let last = RECENT as u64 + 100;
    for p in 3..=last {
        w.push(applied(p, env("b")), 10);
    }
    let first = w.records.front().unwrap().0.recorded.position;
    assert!(first > 3, "the first records left the window");
    // Environment a's last change and the settings' left the window: a
    // cursor past them knows there is nothing for it until the head.
    assert_eq!(changes(&w, "a", 3, 100), (vec![], Some(last)));
    assert!(!w.changed_after("a", 2));
    // A cursor before them cannot tell from the window.
    assert_eq!(changes(&w, "a", 2, 100), (vec![], None));
    assert_eq!(changes(&w, "c", 2, 100), (vec![], None));
    assert!(w.changed_after("a", 1));
    // Environment b changed in what left the window.
    assert_eq!(changes(&w, "b", 3, 1).1, None);
    assert!(w.changed_after("b", 3));
    assert_eq!(changes(&w, "b", first, 1), (vec![first], Some(first)));
    assert!(!w.changed_after("b", last));
}

#[test]
fn the_window_knows_nothing_before_its_first_record() {
    let mut w = Window::default();
    assert_eq!(changes(&w, "a", 1, 100), (vec![], None));
    assert!(w.changed_after("a", 0));
    w.push(applied(5, env("b")), 10);
    // Records 1 to 4 were applied before the window began.
    assert_eq!(changes(&w, "a", 4, 100), (vec![], None));
    assert_eq!(changes(&w, "a", 5, 100), (vec![], Some(5)));
    assert!(w.changed_after("a", 3));
    assert!(!w.changed_after("a", 4));
    assert!(w.changed_after("b", 4));
}

#[test]
fn a_round_names_the_environments_that_changed_or_wakes_all() {
    let mut w = Window::default();
    let audiences = [
        env("a"),
        env("b"),
        env("a"),
        Some(Audience::All),
        env("c"),
        None,
    ];
    for (i, audience) in audiences.into_iter().enumerate() {
        w.push(applied(11 + i as u64, audience), 10);
    }
    let names = |w: &Window, after, to| {
        w.environments_changed(after, to).map(|e: HashSet<String>| {
            let mut e: Vec<String> = e.into_iter().collect();
            e.sort();
            e
        })
    };
    assert_eq!(
        names(&w, 10, 13),
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(names(&w, 12, 13), Some(vec!["a".to_owned()]));
    assert_eq!(names(&w, 13, 13), Some(vec![]));
    // The settings' change, and a token's record, wake every watcher.
    assert_eq!(names(&w, 12, 14), None);
    assert_eq!(names(&w, 14, 15), Some(vec!["c".to_owned()]));
    assert_eq!(names(&w, 15, 16), None);
    // A record of an environment that no watcher sees as a change (its
    // creation) wakes no one.
    let mut created = applied(17, None);
    created.recorded.stream = Stream::Environment("d".into()).name();
    w.push(created, 10);
    assert_eq!(names(&w, 16, 17), Some(vec![]));
    // So do records the window no longer holds (or never held).
    assert_eq!(names(&w, 9, 12), None);
    assert_eq!(Window::default().environments_changed(0, 1), None);
}
