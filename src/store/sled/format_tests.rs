//! Tests of the formats of a data directory and their upgrade at open.

use std::path::Path;

use super::super::super::conformance::{one, with_keys};
use super::super::tests::{edit_log_tree, expect_corrupt, refused_at, three_records};
use super::super::{
    open_db, prefixed, record_position, SledStore, DATA_KEY, DEFAULT_CACHE_BYTES, INDEX, KEYS_META,
    KEYS_TREE, META, RECORD, VERSION,
};
use crate::store::codec;
use crate::store::{EventLog as _, KeyStore as _};

/// Opens a closed data directory's sled database as it is.
fn edit_db<T>(dir: &Path, edit: impl FnOnce(&::sled::Db) -> T) -> T {
    let db = open_db(dir, DEFAULT_CACHE_BYTES).unwrap();
    let out = edit(&db);
    db.flush().unwrap();
    out
}

/// Writes three records on two streams, creating data keys `c1` and `c2`
/// and destroying `c2`, and the key store's meta `kek_id`; then closes.
async fn records_and_keys(dir: &Path) {
    let store = SledStore::open(dir).unwrap();
    let (log, keys) = (store.log(), store.keys());
    log.append(with_keys(
        one("a", 0),
        &[("c1", &[1, 2, 3]), ("c2", &[4])],
        &[],
    ))
    .await
    .unwrap();
    log.append(one("b", 0)).await.unwrap();
    log.append(with_keys(one("a", 1), &[], &["c2"]))
        .await
        .unwrap();
    keys.set_meta("kek_id", b"k1".to_vec()).await.unwrap();
    drop((log, keys));
    store.close().await.unwrap();
}

/// Gives a closed directory's log tree the stream index formats 1 to 3
/// kept on disk: an `i` key per record (stream, NUL, version) naming its
/// position.
fn add_index(dir: &Path) {
    edit_log_tree(dir, |tree| {
        let records: Vec<_> = tree.scan_prefix([RECORD]).map(Result::unwrap).collect();
        for (key, value) in records {
            let position = record_position(&key).unwrap();
            let env = codec::decode_verified(&value, position).unwrap();
            tree.insert(
                index_key(&env.stream, env.stream_version),
                &position.to_be_bytes(),
            )
            .unwrap();
        }
    });
}

/// The key of a stream's version in the stream index formats 1 to 3 kept.
fn index_key(stream: &str, version: u64) -> Vec<u8> {
    let mut key = prefixed(INDEX, stream);
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// Turns a closed directory of the current format into what format 3
/// wrote: the stream index, and format "3".
fn as_format_3(dir: &Path) {
    add_index(dir);
    edit_log_tree(dir, |tree| {
        tree.insert(prefixed(META, "format"), &b"3"[..]).unwrap()
    });
}

/// Turns a closed directory of the current format into what format 2
/// wrote: format 3's stream index, the key store's entries in a `keys`
/// tree (its meta under `m`), and format "2".
fn as_format_2(dir: &Path) {
    add_index(dir);
    edit_db(dir, |db| {
        let log = db.open_tree(super::super::LOG_TREE).unwrap();
        let keys = db.open_tree(KEYS_TREE).unwrap();
        for prefix in [DATA_KEY, KEYS_META] {
            for item in log.scan_prefix([prefix]) {
                let (key, value) = item.unwrap();
                let mut moved = key.to_vec();
                if prefix == KEYS_META {
                    moved[0] = b'm';
                }
                keys.insert(moved, value).unwrap();
                log.remove(key).unwrap();
            }
        }
        log.insert(prefixed(META, "format"), &b"2"[..]).unwrap();
    });
}

/// Turns a closed directory of the current format into what format 1
/// wrote: format 2's layout, a `v` key per stream with its last version,
/// and format "1".
fn as_format_1(dir: &Path, versions: &[(&str, u64)]) {
    as_format_2(dir);
    edit_log_tree(dir, |tree| {
        for (stream, version) in versions {
            tree.insert(prefixed(VERSION, stream), &version.to_be_bytes())
                .unwrap();
        }
        tree.insert(prefixed(META, "format"), &b"1"[..]).unwrap();
    });
}

/// What a closed directory holds: its format, its `v` and `i` keys, its
/// data keys and key store meta in the log tree, and its `keys` tree's
/// entries (`None` when there is no such tree).
#[derive(Debug, PartialEq)]
struct Layout {
    format: String,
    version_keys: usize,
    index_keys: usize,
    data_keys: usize,
    key_meta: usize,
    keys_tree: Option<usize>,
}

fn layout(dir: &Path) -> Layout {
    edit_db(dir, |db| {
        let log = db.open_tree(super::super::LOG_TREE).unwrap();
        let format = log.get(prefixed(META, "format")).unwrap().unwrap();
        let keys_tree = db
            .tree_names()
            .iter()
            .any(|name| &**name == KEYS_TREE.as_bytes())
            .then(|| db.open_tree(KEYS_TREE).unwrap().len());
        Layout {
            format: String::from_utf8(format.to_vec()).unwrap(),
            version_keys: log.scan_prefix([VERSION]).count(),
            index_keys: log.scan_prefix([INDEX]).count(),
            data_keys: log.scan_prefix([DATA_KEY]).count(),
            key_meta: log.scan_prefix([KEYS_META]).count(),
            keys_tree,
        }
    })
}

fn current(data_keys: usize, key_meta: usize) -> Layout {
    Layout {
        format: "4".into(),
        version_keys: 0,
        index_keys: 0,
        data_keys,
        key_meta,
        keys_tree: None,
    }
}

/// Opens the directory and checks what `records_and_keys` wrote (the
/// records, the streams' records and versions, `c1` alone among the data
/// keys, and the meta), writing nothing; waits for the removal of an
/// on-disk stream index before it closes.
async fn check_records_and_keys(dir: &Path) {
    let mut store = SledStore::open(dir).unwrap();
    let (log, keys) = (store.log(), store.keys());
    assert_eq!(log.read(1, 10).await.unwrap().len(), 3);
    let a = log.read_stream("a", u64::MAX).await.unwrap();
    assert_eq!(
        a.iter()
            .map(|e| (e.position, e.stream_version))
            .collect::<Vec<_>>(),
        vec![(1, 1), (3, 2)]
    );
    assert_eq!(refused_at(&log, "a", 1).await, Some(2));
    assert_eq!(refused_at(&log, "b", 0).await, Some(1));
    assert_eq!(keys.get("c1").await.unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(keys.get("c2").await.unwrap(), None);
    assert_eq!(keys.list().await.unwrap(), vec!["c1".to_owned()]);
    assert_eq!(keys.meta("kek_id").await.unwrap(), Some(b"k1".to_vec()));
    drop((log, keys));
    store.finish_index_cleanup().await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_new_directory_keeps_its_data_keys_in_the_log_tree_and_no_version_keys() {
    let dir = tempfile::tempdir().unwrap();
    records_and_keys(dir.path()).await;
    assert_eq!(layout(dir.path()), current(1, 1));
    check_records_and_keys(dir.path()).await;
}

#[tokio::test]
async fn a_format_2_directory_has_its_key_store_moved_into_the_log_tree() {
    let dir = tempfile::tempdir().unwrap();
    records_and_keys(dir.path()).await;
    as_format_2(dir.path());
    let before = layout(dir.path());
    assert_eq!(
        (before.format.as_str(), before.keys_tree, before.index_keys),
        ("2", Some(2), 3)
    );
    check_records_and_keys(dir.path()).await;
    assert_eq!(layout(dir.path()), current(1, 1));
    // And it opens again as format 4.
    check_records_and_keys(dir.path()).await;
}

#[tokio::test]
async fn a_format_3_directory_has_its_stream_index_removed() {
    let dir = tempfile::tempdir().unwrap();
    records_and_keys(dir.path()).await;
    as_format_3(dir.path());
    let before = layout(dir.path());
    assert_eq!((before.format.as_str(), before.index_keys), ("3", 3));
    check_records_and_keys(dir.path()).await;
    assert_eq!(layout(dir.path()), current(1, 1));
    check_records_and_keys(dir.path()).await;
}

#[tokio::test]
async fn index_keys_an_upgrade_cut_short_left_in_a_current_log_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    records_and_keys(dir.path()).await;
    // Cut short after the format was recorded, before the index was gone:
    // the entries are not read, even when they no longer match.
    add_index(dir.path());
    edit_log_tree(dir.path(), |tree| {
        tree.insert(index_key("a", 9), &2u64.to_be_bytes()).unwrap();
    });
    assert_eq!(layout(dir.path()).index_keys, 4);
    check_records_and_keys(dir.path()).await;
    assert_eq!(layout(dir.path()), current(1, 1));
}

#[tokio::test]
async fn an_upgrade_cut_short_is_redone_without_copies_the_keys_tree_no_longer_holds() {
    let dir = tempfile::tempdir().unwrap();
    records_and_keys(dir.path()).await;
    as_format_2(dir.path());
    // Copies an upgrade made before it was cut short, then an older build
    // destroyed `c2` and the copy of `c1` is of an earlier value.
    edit_log_tree(dir.path(), |tree| {
        tree.insert(prefixed(DATA_KEY, "c2"), &[4u8][..]).unwrap();
        tree.insert(prefixed(DATA_KEY, "c1"), &[0u8][..]).unwrap();
    });
    check_records_and_keys(dir.path()).await;
    assert_eq!(layout(dir.path()), current(1, 1));
}

#[tokio::test]
async fn a_format_1_log_is_verified_with_its_version_keys_then_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    records_and_keys(dir.path()).await;
    as_format_1(dir.path(), &[("a", 2), ("b", 1)]);
    assert_eq!(layout(dir.path()).version_keys, 2);
    check_records_and_keys(dir.path()).await;
    assert_eq!(layout(dir.path()), current(1, 1));
    check_records_and_keys(dir.path()).await;
}

#[tokio::test]
async fn a_format_1_log_whose_version_key_is_wrong_stops_open_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    records_and_keys(dir.path()).await;
    as_format_1(dir.path(), &[("a", 1), ("b", 1)]);
    let before = layout(dir.path());
    let message = expect_corrupt(dir.path(), 3);
    assert!(
        message.contains("is recorded at version 1 but its last record is version 2"),
        "{message}"
    );
    assert_eq!(layout(dir.path()), before);
}

#[tokio::test]
async fn a_format_1_log_missing_a_version_key_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path()).await;
    as_format_1(dir.path(), &[("a", 2)]);
    let message = expect_corrupt(dir.path(), 2);
    assert!(
        message.contains("\"b\" has records but no version"),
        "{message}"
    );
}

#[tokio::test]
async fn a_version_key_in_a_current_log_stops_open() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path()).await;
    edit_log_tree(dir.path(), |tree| {
        tree.insert(prefixed(VERSION, "a"), &2u64.to_be_bytes())
            .unwrap()
    });
    let message = expect_corrupt(dir.path(), 3);
    assert!(
        message.contains("which formats after 1 do not write"),
        "{message}"
    );
}

/// Gives a closed directory of the current format the `keys` tree an
/// upgrade cut short before its drop leaves: a copy of the key store's
/// entries as format 2 kept them.
fn leave_keys_tree(dir: &Path) {
    edit_db(dir, |db| {
        let log = db.open_tree(super::super::LOG_TREE).unwrap();
        let keys = db.open_tree(KEYS_TREE).unwrap();
        for (prefix, old) in [(DATA_KEY, DATA_KEY), (KEYS_META, b'm')] {
            for item in log.scan_prefix([prefix]) {
                let (key, value) = item.unwrap();
                let mut copied = key.to_vec();
                copied[0] = old;
                keys.insert(copied, value).unwrap();
            }
        }
    });
}

#[tokio::test]
async fn a_keys_tree_left_beside_a_current_log_is_dropped_when_the_log_holds_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    records_and_keys(dir.path()).await;
    leave_keys_tree(dir.path());
    assert_eq!(layout(dir.path()).keys_tree, Some(2));
    check_records_and_keys(dir.path()).await;
    assert_eq!(layout(dir.path()), current(1, 1));
    // One holding an entry the log's tree does not hold stops the start:
    // a data key the log has no copy of, or another value of one it has.
    for (id, value) in [("c9", [9u8]), ("c1", [7u8])] {
        leave_keys_tree(dir.path());
        edit_db(dir.path(), |db| {
            let keys = db.open_tree(KEYS_TREE).unwrap();
            keys.insert(prefixed(DATA_KEY, id), &value[..]).unwrap()
        });
        let message = expect_corrupt(dir.path(), 0);
        assert!(
            message.contains(
                "a `keys` tree beside a log of format 4 holds an entry the log's tree does not"
            ),
            "{message}"
        );
        edit_db(dir.path(), |db| db.drop_tree(KEYS_TREE).unwrap());
    }
    check_records_and_keys(dir.path()).await;
}

#[tokio::test]
async fn a_format_this_build_does_not_know_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    three_records(dir.path()).await;
    edit_log_tree(dir.path(), |tree| {
        tree.insert(prefixed(META, "format"), &b"5"[..]).unwrap()
    });
    let err = SledStore::open(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported data format \"5\"; this build reads formats \"1\" to \"4\" of the sled log"
    );
}

#[tokio::test]
async fn the_index_cleanup_stops_when_asked_or_when_the_log_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    records_and_keys(dir.path()).await;
    as_format_3(dir.path());
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    let space = super::super::Space {
        dir: dir.path().to_path_buf(),
    };
    let index_keys = || log.tree.scan_prefix([INDEX]).count();
    // The store's own cleaner may have begun: put the keys back.
    let mut store = store;
    store.finish_index_cleanup().await;
    assert_eq!(index_keys(), 0);
    for (stream, version) in [("a", 1), ("a", 2), ("b", 1)] {
        log.tree
            .insert(index_key(stream, version), &1u64.to_be_bytes())
            .unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(true);
    let weak = std::sync::Arc::downgrade(&log);
    assert_eq!(
        super::remove_index(&weak, &stop, &space).unwrap(),
        (0, false)
    );
    assert_eq!(index_keys(), 3);
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        super::remove_index(&weak, &stop, &space).unwrap(),
        (3, true)
    );
    assert_eq!(index_keys(), 0);
    let tree = log.tree.clone();
    drop(log);
    store.close().await.unwrap();
    tree.insert(index_key("a", 1), &1u64.to_be_bytes()).unwrap();
    assert_eq!(
        super::remove_index(&weak, &stop, &space).unwrap(),
        (0, false)
    );
    assert_eq!(tree.scan_prefix([INDEX]).count(), 1);
}
