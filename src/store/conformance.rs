//! The one test suite every `EventLog` and `KeyStore` must pass, run against
//! the memory and the sled implementations, plus the builders tests share.
//! Long because the contract is: one suite, one file.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{
    request_key, Commit, Error, EventLog, KeyChanges, KeyStore, MemoryLog, NewEvent, RequestRecord,
    SledStore, StreamAppend,
};

/// A store under test, with whatever must live as long as it.
pub(super) struct Fixture {
    pub(super) log: Arc<dyn EventLog>,
    pub(super) keys: Arc<dyn KeyStore>,
    _guard: Option<(SledStore, tempfile::TempDir)>,
    _pg: Option<super::postgres::PgStore>,
}

pub(super) async fn memory_fixture() -> Fixture {
    let log = MemoryLog::new();
    Fixture {
        keys: log.keys(),
        log: Arc::new(log),
        _guard: None,
        _pg: None,
    }
}

pub(super) async fn sled_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    Fixture {
        log: store.log(),
        keys: store.keys(),
        _guard: Some((store, dir)),
        _pg: None,
    }
}

/// A fresh database on the test PostgreSQL (feature `e2e`: a real server).
#[cfg(feature = "e2e")]
pub(super) async fn postgres_fixture() -> Fixture {
    let url = crate::testing::postgres::TestPostgres::shared()
        .fresh_database()
        .await;
    let store = super::postgres::PgStore::connect(&url, 8, None)
        .await
        .unwrap();
    Fixture {
        log: store.log(),
        keys: store.keys(),
        _guard: None,
        _pg: Some(store),
    }
}

pub(super) fn event(event_type: &str) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        schema_version: 1,
        payload: format!("payload of {event_type}").into_bytes(),
    }
}

pub(super) fn append(stream: &str, expected_version: u64, events: usize) -> StreamAppend {
    StreamAppend {
        stream: stream.into(),
        expected_version,
        events: (0..events).map(|i| event(&format!("test.e{i}"))).collect(),
    }
}

pub(super) fn commit(appends: Vec<StreamAppend>) -> Commit {
    Commit {
        appends,
        actor: "system".into(),
        request_id: String::new(),
        request_fingerprint: Vec::new(),
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        keys: KeyChanges::default(),
    }
}

/// Adds data keys to create and destroy to a commit.
pub(super) fn with_keys(
    mut commit: Commit,
    created: &[(&str, &[u8])],
    destroyed: &[&str],
) -> Commit {
    commit.keys = KeyChanges {
        created: created
            .iter()
            .map(|(id, k)| ((*id).to_owned(), k.to_vec()))
            .collect(),
        destroyed: destroyed.iter().map(|id| (*id).to_owned()).collect(),
    };
    commit
}

/// A commit of one event on `stream`, expected at `expected_version`.
pub(super) fn one(stream: &str, expected_version: u64) -> Commit {
    commit(vec![append(stream, expected_version, 1)])
}

pub(super) fn with_request(mut commit: Commit, request_id: &str, fingerprint: &[u8]) -> Commit {
    commit.request_id = request_id.into();
    commit.request_fingerprint = fingerprint.to_vec();
    commit
}

async fn appended_events_read_back(f: &Fixture) {
    let c = with_request(commit(vec![append("env/1", 0, 2)]), "r-1", b"fp");
    let appended = f.log.append(c).await.unwrap();
    assert_eq!(appended.len(), 2);
    for (i, env) in appended.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(env.position, n);
        assert_eq!(env.stream_version, n);
        assert_eq!(env.stream, "env/1");
        assert_eq!(env.event_type, format!("test.e{i}"));
        assert_eq!(env.schema_version, 1);
        assert_eq!(env.actor, "system");
        assert_eq!(env.request_id, "r-1");
        assert_eq!(env.request_fingerprint, b"fp");
        assert_eq!(env.commit_size, 2);
        assert_eq!(env.payload, format!("payload of test.e{i}").into_bytes());
        assert_eq!(env.time.unwrap().seconds, 1_700_000_000);
        assert!(env.crc32c.is_some());
    }
    assert_eq!(f.log.head(), 2);
    assert_eq!(f.log.read(1, 10).await.unwrap(), appended);
    assert_eq!(
        f.log.read_stream("env/1", u64::MAX).await.unwrap(),
        appended
    );
}

async fn positions_are_contiguous_across_streams(f: &Fixture) {
    f.log.append(one("a", 0)).await.unwrap();
    f.log.append(one("b", 0)).await.unwrap();
    f.log.append(commit(vec![append("a", 1, 2)])).await.unwrap();
    let records = f.log.read(1, 100).await.unwrap();
    let seen: Vec<_> = records
        .iter()
        .map(|e| (e.position, e.stream.as_str(), e.stream_version))
        .collect();
    assert_eq!(seen, [(1, "a", 1), (2, "b", 1), (3, "a", 2), (4, "a", 3)]);
}

async fn stream_versions_count_each_streams_events(f: &Fixture) {
    assert_eq!(f.log.stream_version("a").await.unwrap(), 0);
    f.log.append(commit(vec![append("a", 0, 3)])).await.unwrap();
    f.log.append(one("b", 0)).await.unwrap();
    assert_eq!(f.log.stream_version("a").await.unwrap(), 3);
    assert_eq!(f.log.stream_version("b").await.unwrap(), 1);
    assert_eq!(f.log.stream_version("c").await.unwrap(), 0);
}

async fn expected_version_conflict_writes_nothing(f: &Fixture) {
    let err = f.log.append(one("a", 5)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { stream, expected: 5, actual: 0 } if stream == "a"),
        "{err}"
    );
    assert_eq!(f.log.head(), 0);
    f.log.append(one("a", 0)).await.unwrap();
    let err = f.log.append(one("a", 0)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(f.log.head(), 1);
    assert_eq!(f.log.read(1, 10).await.unwrap().len(), 1);
    assert_eq!(f.log.stream_version("a").await.unwrap(), 1);
}

async fn multi_stream_commit_is_all_or_nothing(f: &Fixture) {
    let bad = commit(vec![
        append("a", 0, 1),
        append("b", 3, 1),
        append("c", 0, 1),
    ]);
    let err = f.log.append(bad).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { stream, .. } if stream == "b"),
        "{err}"
    );
    assert_eq!(f.log.head(), 0);
    for stream in ["a", "b", "c"] {
        assert_eq!(f.log.stream_version(stream).await.unwrap(), 0);
        assert!(f
            .log
            .read_stream(stream, u64::MAX)
            .await
            .unwrap()
            .is_empty());
    }
    let good = commit(vec![append("a", 0, 2), append("b", 0, 1)]);
    let appended = f.log.append(good).await.unwrap();
    let seen: Vec<_> = appended
        .iter()
        .map(|e| {
            (
                e.position,
                e.stream.as_str(),
                e.stream_version,
                e.commit_size,
            )
        })
        .collect();
    assert_eq!(seen, [(1, "a", 1, 3), (2, "a", 2, 3), (3, "b", 1, 3)]);
}

async fn append_without_events_guards_a_version(f: &Fixture) {
    f.log.append(one("b", 0)).await.unwrap();
    let guarded = commit(vec![append("a", 0, 1), append("b", 0, 0)]);
    let err = f.log.append(guarded).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { stream, actual: 1, .. } if stream == "b"),
        "{err}"
    );
    let guarded = commit(vec![append("a", 0, 1), append("b", 1, 0)]);
    let appended = f.log.append(guarded).await.unwrap();
    assert_eq!(appended.len(), 1);
    assert_eq!(f.log.stream_version("b").await.unwrap(), 1);
}

async fn same_stream_twice_in_a_commit_applies_in_order(f: &Fixture) {
    let twice = commit(vec![append("a", 0, 1), append("a", 1, 2)]);
    let appended = f.log.append(twice).await.unwrap();
    let versions: Vec<_> = appended.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, [1, 2, 3]);
    let stale = commit(vec![append("a", 3, 1), append("a", 3, 1)]);
    let err = f.log.append(stale).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 3,
                actual: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(f.log.head(), 3);
}

async fn duplicate_request_id_is_rejected_with_the_first_record(f: &Fixture) {
    f.log.append(one("x", 0)).await.unwrap();
    let first = with_request(commit(vec![append("a", 0, 2)]), "r-1", b"first");
    f.log.append(first.clone()).await.unwrap();
    let expected = RequestRecord {
        request_id: request_key("system", "r-1"),
        first_position: 2,
        last_position: 3,
        fingerprint: b"first".to_vec(),
    };
    // A retry would also conflict; the duplicate is reported, not the conflict.
    let err = f.log.append(first).await.unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateRequest { record } if *record == expected),
        "{err}"
    );
    let reuse = with_request(one("b", 0), "r-1", b"other");
    let err = f.log.append(reuse).await.unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateRequest { record } if *record == expected),
        "{err}"
    );
    assert_eq!(f.log.head(), 3);
    assert_eq!(f.log.stream_version("b").await.unwrap(), 0);
    assert_eq!(
        f.log.find_request("system", "r-1").await.unwrap(),
        Some(expected)
    );
    assert_eq!(f.log.find_request("system", "r-2").await.unwrap(), None);
    assert_eq!(f.log.find_request("system", "").await.unwrap(), None);
}

async fn request_ids_belong_to_their_caller(f: &Fixture) {
    let mut first = with_request(one("a", 0), "r-1", b"fp");
    first.actor = "tok-a".into();
    f.log.append(first).await.unwrap();
    // The same id from another caller is another request, not a duplicate.
    let mut other = with_request(one("b", 0), "r-1", b"fp");
    other.actor = "tok-b".into();
    let recorded = f.log.append(other).await.unwrap();
    assert_eq!(recorded[0].position, 2);
    let a = f.log.find_request("tok-a", "r-1").await.unwrap().unwrap();
    let b = f.log.find_request("tok-b", "r-1").await.unwrap().unwrap();
    assert_eq!((a.first_position, b.first_position), (1, 2));
    assert_eq!(f.log.find_request("tok-c", "r-1").await.unwrap(), None);
}

async fn commits_without_request_id_are_never_duplicates(f: &Fixture) {
    f.log.append(one("a", 0)).await.unwrap();
    f.log.append(one("a", 1)).await.unwrap();
    assert_eq!(f.log.head(), 2);
}

async fn concurrent_appends_are_gapless_and_all_readable(f: &Fixture) {
    const TASKS: usize = 50;
    const COMMITS: u64 = 20;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let log = Arc::clone(&f.log);
        tasks.push(tokio::spawn(async move {
            let stream = format!("reg/e/{t}");
            let mut acked = Vec::new();
            for v in 0..COMMITS {
                let c = with_request(one(&stream, v), &format!("r-{t}-{v}"), b"fp");
                acked.extend(log.append(c).await.unwrap());
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    let total = TASKS as u64 * COMMITS;
    assert_eq!(f.log.head(), total);
    let positions: HashSet<u64> = acked.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=total).collect());
    let records = f.log.read(1, usize::MAX).await.unwrap();
    assert_eq!(records.len() as u64, total);
    acked.sort_by_key(|e| e.position);
    assert_eq!(records, acked);
    for t in 0..TASKS {
        let stream = format!("reg/e/{t}");
        let versions: Vec<u64> = f
            .log
            .read_stream(&stream, u64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.stream_version)
            .collect();
        assert_eq!(versions, (1..=COMMITS).collect::<Vec<_>>());
    }
}

/// Commits that race for one stream version and one request id, among
/// others that race for nothing, all at once (so the writers group them):
/// one winner each, the losers refused alone, everything else written.
async fn racing_commits_are_refused_alone(f: &Fixture) {
    let mut tasks = Vec::new();
    for t in 0..60 {
        let log = Arc::clone(&f.log);
        tasks.push(tokio::spawn(async move {
            let c = match t % 3 {
                // The same stream at version 0: one wins.
                0 => one("reg/e/race", 0),
                // One caller's request id on streams of their own: one wins.
                1 => with_request(one(&format!("reg/e/req-{t}"), 0), "same", b"fp"),
                // Nothing in common.
                _ => one(&format!("reg/e/free-{t}"), 0),
            };
            (t % 3, log.append(c).await)
        }));
    }
    let mut won = [0; 3];
    let mut positions = Vec::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        let (kind, result) = task.await.unwrap();
        match result {
            Ok(envelopes) => {
                won[kind] += 1;
                positions.extend(envelopes.iter().map(|e| e.position));
            }
            Err(Error::Conflict { .. }) if kind == 0 => {}
            Err(Error::DuplicateRequest { record }) if kind == 1 => duplicates.push(record),
            Err(e) => panic!("kind {kind}: {e}"),
        }
    }
    assert_eq!(won, [1, 1, 20]);
    positions.sort_unstable();
    assert_eq!(positions, (1..=22).collect::<Vec<_>>(), "gapless");
    assert_eq!(f.log.head(), 22);
    let winner = f.log.find_request("system", "same").await.unwrap().unwrap();
    assert_eq!(duplicates.len(), 19);
    assert!(duplicates.iter().all(|d| *d == winner), "{duplicates:?}");
    assert_eq!(f.log.stream_version("reg/e/race").await.unwrap(), 1);
}

async fn read_never_returns_past_head(f: &Fixture) {
    assert!(f.log.read(1, 10).await.unwrap().is_empty());
    f.log.append(commit(vec![append("a", 0, 3)])).await.unwrap();
    assert!(f.log.read(4, 10).await.unwrap().is_empty());
    assert!(f.log.read(u64::MAX, 10).await.unwrap().is_empty());
    assert!(f.log.read(1, 0).await.unwrap().is_empty());
    let positions = |records: Vec<super::Envelope>| -> Vec<u64> {
        records.iter().map(|e| e.position).collect()
    };
    assert_eq!(positions(f.log.read(0, 10).await.unwrap()), [1, 2, 3]);
    assert_eq!(positions(f.log.read(2, 1).await.unwrap()), [2]);
    assert_eq!(positions(f.log.read(2, usize::MAX).await.unwrap()), [2, 3]);

    // While commits land, whatever a read returns is at or below the head.
    let log = Arc::clone(&f.log);
    let writer = tokio::spawn(async move {
        for v in 0..100 {
            log.append(one("b", v)).await.unwrap();
        }
    });
    while !writer.is_finished() {
        let records = f.log.read(1, usize::MAX).await.unwrap();
        let head = f.log.head();
        assert!(records.len() as u64 <= head);
        let stream = f.log.read_stream("b", u64::MAX).await.unwrap();
        assert!(stream.iter().all(|e| e.position <= f.log.head()));
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert_eq!(f.log.head(), 103);
}

async fn watch_head_wakes_after_each_commit(f: &Fixture) {
    let mut head = f.log.watch_head();
    assert_eq!(*head.borrow_and_update(), 0);
    let log = Arc::clone(&f.log);
    let writer = tokio::spawn(async move { log.append(one("a", 0)).await.unwrap() });
    tokio::time::timeout(Duration::from_secs(10), head.changed())
        .await
        .expect("head changes within the timeout")
        .unwrap();
    assert_eq!(*head.borrow_and_update(), 1);
    writer.await.unwrap();
    f.log.append(commit(vec![append("a", 1, 2)])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), head.changed())
        .await
        .expect("head changes within the timeout")
        .unwrap();
    assert_eq!(*head.borrow_and_update(), 3);
    // A late subscriber starts at the current head, with nothing pending.
    let late = f.log.watch_head();
    assert_eq!(*late.borrow(), 3);
    assert!(!late.has_changed().unwrap());
}

async fn read_stream_stops_at_up_to(f: &Fixture) {
    f.log.append(one("a", 0)).await.unwrap(); // 1
    f.log.append(one("b", 0)).await.unwrap(); // 2
    f.log.append(one("a", 1)).await.unwrap(); // 3
    f.log.append(one("a\0b", 0)).await.unwrap(); // 4
    f.log.append(one("a", 2)).await.unwrap(); // 5
    let positions = |records: Vec<super::Envelope>| -> Vec<u64> {
        records.iter().map(|e| e.position).collect()
    };
    assert_eq!(
        positions(f.log.read_stream("a", u64::MAX).await.unwrap()),
        [1, 3, 5]
    );
    assert_eq!(positions(f.log.read_stream("a", 4).await.unwrap()), [1, 3]);
    assert_eq!(positions(f.log.read_stream("a", 3).await.unwrap()), [1, 3]);
    assert_eq!(
        positions(f.log.read_stream("a", 0).await.unwrap()),
        Vec::<u64>::new()
    );
    assert_eq!(
        positions(f.log.read_stream("a\0b", u64::MAX).await.unwrap()),
        [4]
    );
    assert!(f
        .log
        .read_stream("missing", u64::MAX)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(f.log.stream_version("a").await.unwrap(), 3);
    assert_eq!(f.log.stream_version("a\0b").await.unwrap(), 1);
}

async fn empty_commit_is_rejected(f: &Fixture) {
    let err = f.log.append(commit(vec![])).await.unwrap_err();
    assert!(matches!(err, Error::EmptyCommit), "{err}");
    let err = f
        .log
        .append(commit(vec![append("a", 0, 0)]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::EmptyCommit), "{err}");
    assert_eq!(f.log.head(), 0);
}

async fn log_id_is_a_stable_uuid(f: &Fixture) {
    let id = f.log.log_id().to_owned();
    assert_eq!(id.len(), 36);
    f.log.append(one("a", 0)).await.unwrap();
    assert_eq!(f.log.log_id(), id);
}

async fn commits_create_and_destroy_data_keys_with_their_events(f: &Fixture) {
    assert_eq!(f.keys.get("c1").await.unwrap(), None);
    assert!(f.keys.list().await.unwrap().is_empty());
    let c = with_keys(one("a", 0), &[("c2", &[2]), ("c1", &[1])], &[]);
    f.log.append(c).await.unwrap();
    assert_eq!(f.keys.get("c1").await.unwrap(), Some(vec![1]));
    assert_eq!(f.keys.list().await.unwrap(), ["c1", "c2"]);
    let all = |pairs: &[(&str, u8)]| -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(id, b)| ((*id).to_owned(), vec![*b]))
            .collect()
    };
    assert_eq!(f.keys.all().await.unwrap(), all(&[("c1", 1), ("c2", 2)]));
    // Replacing c1 by c3: one commit creates c3 and destroys c1.
    let c = with_keys(one("a", 1), &[("c3", &[3])], &["c1", "missing"]);
    f.log.append(c).await.unwrap();
    assert_eq!(f.keys.list().await.unwrap(), ["c2", "c3"]);
    assert_eq!(f.keys.all().await.unwrap(), all(&[("c2", 2), ("c3", 3)]));
    assert_eq!(f.keys.get("c1").await.unwrap(), None);
}

async fn a_refused_commit_writes_no_data_key(f: &Fixture) {
    f.log
        .append(with_keys(one("a", 0), &[("c1", &[1])], &[]))
        .await
        .unwrap();
    // A conflict: neither the new key nor the destruction is applied.
    let conflict = with_keys(one("a", 0), &[("c2", &[2])], &["c1"]);
    let err = f.log.append(conflict).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    // A duplicate request: likewise.
    let first = with_request(one("b", 0), "r-1", b"fp");
    f.log.append(first).await.unwrap();
    let dup = with_keys(
        with_request(one("c", 0), "r-1", b"fp"),
        &[("c3", &[3])],
        &["c1"],
    );
    let err = f.log.append(dup).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateRequest { .. }), "{err}");
    assert_eq!(f.keys.list().await.unwrap(), ["c1"]);
}

async fn a_commit_never_replaces_a_stored_data_key(f: &Fixture) {
    f.log
        .append(with_keys(one("a", 0), &[("c1", &[1])], &[]))
        .await
        .unwrap();
    let again = with_keys(one("b", 0), &[("c1", &[9])], &[]);
    let err = f.log.append(again).await.unwrap_err();
    assert!(matches!(&err, Error::KeyExists(id) if id == "c1"), "{err}");
    assert_eq!(f.keys.get("c1").await.unwrap(), Some(vec![1]));
    assert_eq!(f.log.head(), 1, "nothing else was written");
    assert_eq!(f.log.stream_version("b").await.unwrap(), 0);
}

async fn key_store_replaces_only_the_current_key_and_deletes(f: &Fixture) {
    f.log
        .append(with_keys(one("a", 0), &[("c1", &[1]), ("c2", &[2])], &[]))
        .await
        .unwrap();
    assert!(f.keys.replace("c1", &[1], vec![1, 1]).await.unwrap());
    assert_eq!(f.keys.get("c1").await.unwrap(), Some(vec![1, 1]));
    // A stale current value, or a key that is gone, is left alone.
    assert!(!f.keys.replace("c1", &[1], vec![9]).await.unwrap());
    assert!(!f.keys.replace("gone", &[1], vec![9]).await.unwrap());
    assert_eq!(f.keys.get("gone").await.unwrap(), None);
    f.keys
        .delete(&["c1".into(), "missing".into()])
        .await
        .unwrap();
    assert_eq!(f.keys.list().await.unwrap(), ["c2"]);
    // A key destroyed is never brought back by a rotation that read it before.
    assert!(!f.keys.replace("c1", &[1, 1], vec![7]).await.unwrap());
    assert_eq!(f.keys.get("c1").await.unwrap(), None);
    f.keys.delete(&[]).await.unwrap();
}

async fn key_store_meta_is_apart_from_keys(f: &Fixture) {
    assert_eq!(f.keys.meta("kek_id").await.unwrap(), None);
    f.keys.set_meta("kek_id", b"k1".to_vec()).await.unwrap();
    f.log
        .append(with_keys(one("a", 0), &[("kek_id", &[9])], &[]))
        .await
        .unwrap();
    assert_eq!(f.keys.meta("kek_id").await.unwrap(), Some(b"k1".to_vec()));
    assert_eq!(f.keys.get("kek_id").await.unwrap(), Some(vec![9]));
    assert_eq!(f.keys.list().await.unwrap(), ["kek_id"]);
    f.keys.set_meta("kek_id", b"k2".to_vec()).await.unwrap();
    assert_eq!(f.keys.meta("kek_id").await.unwrap(), Some(b"k2".to_vec()));
}

/// Instantiates the suite for one implementation.
macro_rules! conformance_suite {
    ($module:ident, $fixture:path) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn appended_events_read_back() {
                super::appended_events_read_back(&$fixture().await).await;
            }

            #[tokio::test]
            async fn positions_are_contiguous_across_streams() {
                super::positions_are_contiguous_across_streams(&$fixture().await).await;
            }

            #[tokio::test]
            async fn stream_versions_count_each_streams_events() {
                super::stream_versions_count_each_streams_events(&$fixture().await).await;
            }

            #[tokio::test]
            async fn expected_version_conflict_writes_nothing() {
                super::expected_version_conflict_writes_nothing(&$fixture().await).await;
            }

            #[tokio::test]
            async fn multi_stream_commit_is_all_or_nothing() {
                super::multi_stream_commit_is_all_or_nothing(&$fixture().await).await;
            }

            #[tokio::test]
            async fn append_without_events_guards_a_version() {
                super::append_without_events_guards_a_version(&$fixture().await).await;
            }

            #[tokio::test]
            async fn same_stream_twice_in_a_commit_applies_in_order() {
                super::same_stream_twice_in_a_commit_applies_in_order(&$fixture().await).await;
            }

            #[tokio::test]
            async fn duplicate_request_id_is_rejected_with_the_first_record() {
                super::duplicate_request_id_is_rejected_with_the_first_record(&$fixture().await)
                    .await;
            }

            #[tokio::test]
            async fn commits_without_request_id_are_never_duplicates() {
                super::commits_without_request_id_are_never_duplicates(&$fixture().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appends_are_gapless_and_all_readable() {
                super::concurrent_appends_are_gapless_and_all_readable(&$fixture().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn racing_commits_are_refused_alone() {
                super::racing_commits_are_refused_alone(&$fixture().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn read_never_returns_past_head() {
                super::read_never_returns_past_head(&$fixture().await).await;
            }

            #[tokio::test]
            async fn watch_head_wakes_after_each_commit() {
                super::watch_head_wakes_after_each_commit(&$fixture().await).await;
            }

            #[tokio::test]
            async fn read_stream_stops_at_up_to() {
                super::read_stream_stops_at_up_to(&$fixture().await).await;
            }

            #[tokio::test]
            async fn empty_commit_is_rejected() {
                super::empty_commit_is_rejected(&$fixture().await).await;
            }

            #[tokio::test]
            async fn log_id_is_a_stable_uuid() {
                super::log_id_is_a_stable_uuid(&$fixture().await).await;
            }

            #[tokio::test]
            async fn request_ids_belong_to_their_caller() {
                super::request_ids_belong_to_their_caller(&$fixture().await).await;
            }

            #[tokio::test]
            async fn commits_create_and_destroy_data_keys_with_their_events() {
                super::commits_create_and_destroy_data_keys_with_their_events(&$fixture().await)
                    .await;
            }

            #[tokio::test]
            async fn a_refused_commit_writes_no_data_key() {
                super::a_refused_commit_writes_no_data_key(&$fixture().await).await;
            }

            #[tokio::test]
            async fn a_commit_never_replaces_a_stored_data_key() {
                super::a_commit_never_replaces_a_stored_data_key(&$fixture().await).await;
            }

            #[tokio::test]
            async fn key_store_replaces_only_the_current_key_and_deletes() {
                super::key_store_replaces_only_the_current_key_and_deletes(&$fixture().await).await;
            }

            #[tokio::test]
            async fn key_store_meta_is_apart_from_keys() {
                super::key_store_meta_is_apart_from_keys(&$fixture().await).await;
            }
        }
    };
}

conformance_suite!(memory, memory_fixture);
conformance_suite!(sled, sled_fixture);
#[cfg(feature = "e2e")]
conformance_suite!(postgres, postgres_fixture);
