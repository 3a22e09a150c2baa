//! Tests of the sled store (`mod.rs`, the writer and the checks at open).

use std::time::Duration;

use super::super::conformance::{append, commit, one, with_keys, with_request};
use super::*;

fn expect_corrupt(dir: &Path, position: u64) -> String {
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

/// Writes three commits of one event each, on two streams, then closes.
async fn three_records(dir: &Path) {
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

#[tokio::test]
async fn an_index_entry_that_points_elsewhere_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path()).await;
    {
        let db = ::sled::open(dir.path()).unwrap();
        let tree = db.open_tree(LOG_TREE).unwrap();
        // Stream a's version 2 is the record at position 3; point it at 1.
        tree.insert(index_key("a", 2), &1u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let message = expect_corrupt(dir.path(), 3);
    assert!(message.contains("stream index of \"a\""), "{message}");
}

#[tokio::test]
async fn a_record_without_its_index_entry_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path()).await;
    {
        let db = ::sled::open(dir.path()).unwrap();
        let tree = db.open_tree(LOG_TREE).unwrap();
        // Replaced by an entry for a version stream b never had: the
        // record at position 2 has no entry of its own.
        tree.remove(index_key("b", 1)).unwrap();
        tree.insert(index_key("b", 7), &2u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let message = expect_corrupt(dir.path(), 2);
    assert!(message.contains("stream index of \"b\""), "{message}");
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
