//! Tests of the sled store (`mod.rs`, the writer and the checks at open).

use std::time::Duration;

use super::super::conformance::{append, commit, one, with_keys, with_request};
use super::*;
use crate::store::KeyStore;

pub(super) fn expect_corrupt(dir: &Path, position: u64) -> String {
    let err = SledStore::open(dir).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { position: p, .. } if *p == position),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("position {position}")),
        "{message}"
    );
    assert!(
        message.contains("restore the data directory from a backup"),
        "{message}"
    );
    message
}

/// Edits the raw log tree of a closed data directory.
pub(super) fn edit_log_tree<T>(dir: &Path, edit: impl FnOnce(&::sled::Tree) -> T) -> T {
    let db = super::open_db(dir, super::DEFAULT_CACHE_BYTES).unwrap();
    let tree = db.open_tree(LOG_TREE).unwrap();
    let out = edit(&tree);
    db.flush().unwrap();
    out
}

/// Writes three commits of one event each, on two streams, then closes.
pub(super) async fn three_records(dir: &Path) {
    let store = SledStore::open(dir).unwrap();
    let log = store.log();
    log.append(one("a", 0)).await.unwrap();
    log.append(one("b", 0)).await.unwrap();
    log.append(one("a", 1)).await.unwrap();
    drop(log);
    store.close().await.unwrap();
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (log, keys) = (store.log(), store.keys());
    let log_id = log.log_id().to_owned();
    let c = with_request(
        commit(vec![append("a", 0, 2), append("b", 0, 1)]),
        "r-1",
        b"fp",
    );
    let c = with_keys(c, &[("c1", &[1, 2, 3])], &[]);
    let appended = log.append(c.clone()).await.unwrap();
    keys.set_meta("kek_id", b"k1".to_vec()).await.unwrap();
    drop((log, keys));
    store.close().await.unwrap();

    let store = SledStore::open(dir.path()).unwrap();
    let (log, keys) = (store.log(), store.keys());
    assert_eq!(log.log_id(), log_id);
    assert_eq!(log.head(), 3);
    assert_eq!(log.read(1, 10).await.unwrap(), appended);
    assert_eq!(log.stream_version("a").await.unwrap(), 2);
    assert_eq!(log.stream_version("b").await.unwrap(), 1);
    let record = log.find_request("system", "r-1").await.unwrap().unwrap();
    assert_eq!((record.first_position, record.last_position), (1, 3));
    let err = log.append(c).await.unwrap_err();
    assert!(matches!(err, Error::DuplicateRequest { .. }), "{err}");
    assert_eq!(log.append(one("a", 2)).await.unwrap()[0].position, 4);
    assert_eq!(keys.get("c1").await.unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(keys.meta("kek_id").await.unwrap(), Some(b"k1".to_vec()));
    drop((log, keys));
    store.close().await.unwrap();
}

#[tokio::test]
async fn torn_last_record_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path()).await;
    tamper_record(dir.path(), 3, |mut bytes| {
        bytes.truncate(bytes.len() - 3);
        Some(bytes)
    });
    let message = expect_corrupt(dir.path(), 3);
    assert!(message.contains("checksum"), "{message}");
}

#[tokio::test]
async fn flipped_byte_in_a_middle_record_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path()).await;
    tamper_record(dir.path(), 2, |mut bytes| {
        bytes[4] ^= 0x20;
        Some(bytes)
    });
    let message = expect_corrupt(dir.path(), 2);
    assert!(message.contains("checksum mismatch"), "{message}");
}

#[tokio::test]
async fn missing_position_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path()).await;
    tamper_record(dir.path(), 2, |_| None);
    let message = expect_corrupt(dir.path(), 2);
    assert!(message.contains("missing"), "{message}");
}

#[tokio::test]
async fn record_moved_to_another_position_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path()).await;
    let mut first = None;
    tamper_record(dir.path(), 1, |bytes| {
        first = Some(bytes.clone());
        Some(bytes)
    });
    tamper_record(dir.path(), 2, |_| first);
    expect_corrupt(dir.path(), 2);
}

/// Rewrites the record at `position` of a closed directory as version
/// `version` of `stream`, with a valid checksum.
fn rewrite_record(dir: &Path, position: u64, stream: &str, version: u64) {
    tamper_record(dir, position, |bytes| {
        let mut env = codec::decode_verified(&bytes, position).unwrap();
        env.stream = stream.to_owned();
        env.stream_version = version;
        Some(codec::encode(&mut env))
    });
}

#[tokio::test]
async fn a_record_out_of_its_streams_order_stops_open() {
    for (stream, version, fault) in [
        // Stream a's second record says version 3.
        ("a", 3, "stream \"a\" goes from version 1 to 3"),
        // Its version 1 again.
        ("a", 1, "stream \"a\" goes from version 1 to 1"),
        // A stream that starts past version 1.
        ("c", 2, "stream \"c\" goes from version 0 to 2"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        three_records(dir.path()).await;
        rewrite_record(dir.path(), 3, stream, version);
        let message = expect_corrupt(dir.path(), 3);
        assert!(message.contains(fault), "{message}");
    }
}

#[tokio::test]
async fn writer_groups_concurrent_commits_into_fewer_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    const COMMITS: u64 = 200;
    // On this single-threaded runtime every task queues its commit before
    // the writer runs again, so the writer sees them together.
    let tasks: Vec<_> = (0..COMMITS)
        .map(|i| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.append(one(&format!("s{i}"), 0)).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(log.head(), COMMITS);
    let flushes = log.flush_count();
    assert!((1..COMMITS / 4).contains(&flushes), "{flushes} flushes");
}

#[tokio::test]
async fn conflicting_commits_in_one_group_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let log = Arc::clone(&log);
            let c = with_request(one("shared", 0), &format!("r-{}", i % 2), b"fp");
            tokio::spawn(async move { log.append(c).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Conflict { .. } | Error::DuplicateRequest { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(log.head(), 1);
    assert!(log.flush_count() <= 2);
}

#[tokio::test]
async fn failed_apply_fails_the_commit_and_the_writer_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    log.fail_next_apply();
    let err = log.append(one("a", 0)).await.unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err}");
    assert_eq!(err.to_string(), "storage error: injected apply failure");
    assert_eq!(log.head(), 0);
    // Reloaded from the tree: the failed commit is not assumed.
    let appended = log.append(one("a", 0)).await.unwrap();
    assert_eq!(appended[0].position, 1);
    assert_eq!(log.head(), 1);
}

#[tokio::test]
async fn failed_flush_fails_the_commit_and_a_retry_finds_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    log.fail_next_flush();
    let c = with_keys(
        with_request(one("a", 0), "r-1", b"fp"),
        &[("c1", &[1])],
        &[],
    );
    let err = log.append(c.clone()).await.unwrap_err();
    assert!(matches!(err, Error::StorageFull), "{err}");
    assert_eq!(log.head(), 0);
    assert!(log.read(1, 10).await.unwrap().is_empty());
    assert_eq!(log.stream_version("a").await.unwrap(), 0);
    assert_eq!(log.find_request("system", "r-1").await.unwrap(), None);
    // The batch was applied, so the retry is a duplicate, reported only
    // once the writer has flushed it.
    let err = log.append(c).await.unwrap_err();
    let Error::DuplicateRequest { record } = err else {
        panic!("expected a duplicate, got {err}");
    };
    assert_eq!((record.first_position, record.last_position), (1, 1));
    assert_eq!(log.head(), 1);
    assert_eq!(log.read(1, 10).await.unwrap().len(), 1);
    // The data key went in with the events that now stand.
    assert_eq!(store.keys().get("c1").await.unwrap(), Some(vec![1]));
    assert_eq!(log.append(one("a", 1)).await.unwrap()[0].position, 2);
}

#[tokio::test]
async fn a_commit_and_its_data_keys_survive_or_vanish_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (log, keys) = (store.log(), store.keys());
    log.append(with_keys(one("a", 0), &[("old", &[1])], &[]))
        .await
        .unwrap();
    // A failed apply writes neither the events nor the key changes.
    log.fail_next_apply();
    let c = with_keys(one("a", 1), &[("new", &[2])], &["old"]);
    log.append(c.clone()).await.unwrap_err();
    assert_eq!(keys.list().await.unwrap(), ["old"]);
    log.append(c).await.unwrap();
    assert_eq!(keys.list().await.unwrap(), ["new"]);
    drop((log, keys));
    store.close().await.unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.keys().list().await.unwrap(), ["new"]);
    assert_eq!(store.log().head(), 2);
    store.close().await.unwrap();
}

#[tokio::test]
async fn close_refuses_later_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    log.append(one("a", 0)).await.unwrap();
    store.close().await.unwrap();
    let err = log.append(one("a", 1)).await.unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
    assert_eq!(log.head(), 1);
    assert_eq!(log.read(1, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn dropping_every_handle_stops_the_writer_and_frees_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store.log().append(one("a", 0)).await.unwrap();
    drop(store);
    // The writer holds the database until it sees the queue closed.
    let mut reopened = None;
    for _ in 0..100 {
        match SledStore::open(dir.path()) {
            Ok(store) => {
                reopened = Some(store);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let store = reopened.expect("the directory is freed once the writer stops");
    assert_eq!(store.log().head(), 1);
}

#[test]
fn open_outside_a_runtime_fails() {
    let dir = tempfile::tempdir().unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[tokio::test]
async fn a_directory_a_live_store_holds_is_refused_after_the_lock_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let err = SledStore::open(dir.path()).expect_err("the lock is held");
    assert!(err.to_string().contains("could not acquire lock"), "{err}");
    store.close().await.unwrap();
    // Once closed, the directory opens again at once (after sled lets go).
    let again = SledStore::open(dir.path()).unwrap();
    again.close().await.unwrap();
}

/// Writes `a` events on stream "a" and `b` on "b", interleaved in commits
/// of 100, then closes; returns the head.
async fn many_records(dir: &Path, a: u64, b: u64) -> u64 {
    let store = SledStore::open(dir).unwrap();
    let log = store.log();
    let (mut on_a, mut on_b) = (0, 0);
    while on_a < a || on_b < b {
        let (stream, version, left) = if (on_a <= on_b && on_a < a) || on_b >= b {
            ("a", &mut on_a, a)
        } else {
            ("b", &mut on_b, b)
        };
        let count = 100.min(left - *version);
        let events = usize::try_from(count).unwrap();
        log.append(commit(vec![append(stream, *version, events)]))
            .await
            .unwrap();
        *version += count;
    }
    let head = log.head();
    drop(log);
    store.close().await.unwrap();
    head
}

/// Opens `dir` folding; returns the result and the (position, stream,
/// version) of each record handed to the fold.
fn open_folding(dir: &Path) -> (Result<SledStore>, Vec<(u64, String, u64)>) {
    let mut seen = Vec::new();
    let opened = SledStore::open_folding(dir, DEFAULT_CACHE_BYTES, &mut |env| {
        seen.push((env.position, env.stream.clone(), env.stream_version));
        Ok(())
    });
    (opened, seen)
}

#[tokio::test]
async fn open_hands_every_record_to_the_fold_once_in_log_order() {
    let dir = tempfile::tempdir().unwrap();
    // More records than one batch between the two threads of the check.
    let head = many_records(dir.path(), 1_700, 1_300).await;
    assert_eq!(head, 3_000);
    let (opened, seen) = open_folding(dir.path());
    let store = opened.unwrap();
    let positions: Vec<u64> = seen.iter().map(|(p, _, _)| *p).collect();
    assert_eq!(positions, (1..=head).collect::<Vec<_>>());
    for stream in ["a", "b"] {
        let versions: Vec<u64> = seen
            .iter()
            .filter(|(_, s, _)| s == stream)
            .map(|(_, _, v)| *v)
            .collect();
        let last = store.log().stream_version(stream).await.unwrap();
        assert_eq!(versions, (1..=last).collect::<Vec<_>>(), "{stream}");
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_fault_past_the_first_batches_is_reported_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    many_records(dir.path(), 1_500, 1_000).await;
    tamper_record(dir.path(), 2_222, |mut bytes| {
        bytes[4] ^= 0x20;
        Some(bytes)
    });
    let message = expect_corrupt(dir.path(), 2_222);
    assert!(message.contains("checksum mismatch"), "{message}");
    // The fold saw the records before the fault and none after it.
    let (opened, seen) = open_folding(dir.path());
    assert!(opened.is_err());
    assert!(seen.iter().all(|(p, _, _)| *p < 2_222), "{:?}", seen.last());
}

#[tokio::test]
async fn an_error_of_the_fold_fails_open_and_leaves_the_directory_usable() {
    let dir = tempfile::tempdir().unwrap();
    many_records(dir.path(), 1_500, 1_000).await;
    let err = SledStore::open_folding(dir.path(), DEFAULT_CACHE_BYTES, &mut |env| {
        if env.position == 1_234 {
            return Err(Error::storage("the view refused a record"));
        }
        Ok(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.log().head(), 2_500);
    store.close().await.unwrap();
}

/// The actual version a commit at `expected` is refused with, or `None`
/// when it is accepted.
pub(super) async fn refused_at(log: &SledLog, stream: &str, expected: u64) -> Option<u64> {
    match log.append(one(stream, expected)).await {
        Ok(_) => None,
        Err(Error::Conflict { actual, .. }) => Some(actual),
        Err(e) => panic!("append to {stream}: {e}"),
    }
}

#[tokio::test]
async fn after_a_failed_write_the_stream_index_forgets_what_the_tree_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    // "ab" extends "a": their versions must not be taken for each other.
    for (stream, expected) in [("a", 0), ("a", 1), ("ab", 0), ("b", 0), ("a", 2)] {
        log.append(one(stream, expected)).await.unwrap();
    }
    log.fail_next_apply();
    log.append(commit(vec![append("b", 1, 1), append("c", 0, 2)]))
        .await
        .unwrap_err();
    // The versions the failed group took were given back.
    assert_eq!(refused_at(&log, "a", 2).await, Some(3));
    assert_eq!(refused_at(&log, "ab", 0).await, Some(1));
    assert_eq!(refused_at(&log, "b", 0).await, Some(1));
    assert_eq!(refused_at(&log, "c", 1).await, Some(0));
    assert_eq!(refused_at(&log, "a", 3).await, None);
    assert_eq!(refused_at(&log, "c", 0).await, None);
    assert_eq!(log.head(), 7);
    let c = log.read_stream("c", u64::MAX).await.unwrap();
    assert_eq!(
        c.iter()
            .map(|e| (e.position, e.stream_version))
            .collect::<Vec<_>>(),
        vec![(7, 1)]
    );
    let a = log.read_stream("a", u64::MAX).await.unwrap();
    assert_eq!(
        a.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 5, 6]
    );
    drop(log);
    store.close().await.unwrap();
    // A start builds the same index from the records.
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    assert_eq!(log.stream_version("a").await.unwrap(), 4);
    assert_eq!(log.stream_version("c").await.unwrap(), 1);
    assert_eq!(
        log.read_stream("ab", u64::MAX).await.unwrap()[0].position,
        3
    );
    assert_eq!(refused_at(&log, "b", 0).await, Some(1));
    drop(log);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_flushed_group_whose_flush_failed_keeps_its_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    log.append(one("a", 0)).await.unwrap();
    log.fail_next_flush();
    log.append(one("a", 1)).await.unwrap_err();
    // Applied but not durable: not visible, yet its version is taken.
    assert_eq!(log.stream_version("a").await.unwrap(), 1);
    assert_eq!(log.read_stream("a", u64::MAX).await.unwrap().len(), 1);
    assert_eq!(refused_at(&log, "a", 1).await, Some(2));
    // That refusal's group flushed it.
    assert_eq!(log.stream_version("a").await.unwrap(), 2);
    assert_eq!(log.read_stream("a", u64::MAX).await.unwrap().len(), 2);
}
