//! Group commit on PostgreSQL: one writer task per replica takes every
//! commit queued while the last transaction ran (up to `MAX_GROUP`) and
//! writes them in one transaction under the head row's lock, with a fixed
//! number of statements whatever the group's size, and one WAL flush. Each
//! commit is still checked on its own, in order, exactly as a lone commit
//! would be: one that conflicts, repeats a request or would create an
//! existing data key is refused alone, and the rest of its group commits.
//! Answers are sent once the transaction committed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, watch};

use super::{codec, pg_error, pool_error, publish, signed, unsigned, Reachable, CHANNEL};
use crate::domain::state::set_version;
use crate::store::{plan, request_record, Commit, Envelope, Error, RequestRecord, Result};

/// A statement parameter.
type Param<'a> = dyn tokio_postgres::types::ToSql + Sync + 'a;

/// Most commits one transaction takes.
const MAX_GROUP: usize = 512;
/// Commits that may wait for the writer before `append` waits to queue.
const QUEUE: usize = 1024;

/// A queued commit and where its answer goes.
pub(super) struct Pending {
    pub(super) commit: Commit,
    pub(super) reply: oneshot::Sender<Result<Vec<Envelope>>>,
}

/// Starts the writer; it ends when every sender is dropped.
pub(super) fn spawn(
    pool: Pool,
    head: Arc<watch::Sender<u64>>,
    reachable: Reachable,
    observer: crate::store::WriteObserver,
) -> (mpsc::Sender<Pending>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Pending>(QUEUE);
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(p) => group.push(p),
                    Err(_) => break,
                }
            }
            let commits: Vec<&Commit> = group.iter().map(|p| &p.commit).collect();
            let start = std::time::Instant::now();
            let written = reachable.note(write_group(&pool, &head, &commits).await);
            match written {
                Ok(outcomes) => {
                    crate::store::observe_group(&observer, &outcomes, start.elapsed());
                    for (p, outcome) in group.into_iter().zip(outcomes) {
                        let _ = p.reply.send(outcome);
                    }
                }
                Err(e) => {
                    for p in group {
                        let _ = p.reply.send(Err(again(&e)));
                    }
                }
            }
        }
    });
    (tx, task)
}

/// The error of a failed group, once per commit of it.
fn again(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::Closed => Error::Closed,
        Error::Storage { source } => Error::storage(source.to_string()),
        other => Error::storage(other.to_string()),
    }
}

/// What the group's transaction writes.
#[derive(Default)]
struct Rows {
    positions: Vec<i64>,
    streams: Vec<Vec<u8>>,
    versions: Vec<i64>,
    records: Vec<Vec<u8>>,
    requests: Vec<RequestRecord>,
    actors: Vec<String>,
    request_ids: Vec<String>,
    keys_created: Vec<(String, Vec<u8>)>,
    keys_destroyed: Vec<String>,
}

/// Writes a group in one transaction; returns each commit's outcome (in
/// order), or the error that failed the whole transaction.
async fn write_group(
    pool: &Pool,
    published: &watch::Sender<u64>,
    group: &[&Commit],
) -> Result<Vec<Result<Vec<Envelope>>>> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let (actors, ids): (Vec<&str>, Vec<&str>) = group
        .iter()
        .filter(|c| !c.request_id.is_empty())
        .map(|c| (c.actor.as_str(), c.request_id.as_str()))
        .unzip();
    let created: Vec<&str> = group
        .iter()
        .flat_map(|c| c.keys.created.iter().map(|(id, _)| id.as_str()))
        .collect();
    let streams: Vec<&[u8]> = group
        .iter()
        .flat_map(|c| c.appends.iter().map(|a| a.stream.as_bytes()))
        .collect();
    let (lock, requests, keys, versions_q) = tokio::try_join!(
        tx.prepare_cached("SELECT position FROM registrar_head WHERE id = 1 FOR UPDATE"),
        tx.prepare_cached(
            "SELECT r.actor, r.request_id, r.first_position, r.last_position, r.fingerprint \
             FROM registrar_requests r \
             JOIN UNNEST($1::text[], $2::text[]) AS k(actor, request_id) \
             ON r.actor = k.actor AND r.request_id = k.request_id",
        ),
        tx.prepare_cached("SELECT credential_id FROM registrar_keys WHERE credential_id = ANY($1)"),
        tx.prepare_cached("SELECT stream, version FROM registrar_streams WHERE stream = ANY($1)"),
    )
    .map_err(pg_error)?;
    // The head row's lock orders every group of every replica: positions
    // stay gapless and in commit order. The three reads of what the
    // database holds of the group's request ids, data keys and streams are
    // sent with it in one round trip (tokio-postgres pipelines them) and
    // run after it, under the lock.
    let request_params: [&Param<'_>; 2] = [&actors, &ids];
    let key_params: [&Param<'_>; 1] = [&created];
    let stream_params: [&Param<'_>; 1] = [&streams];
    let (head_row, request_rows, key_rows, version_rows) = tokio::try_join!(
        tx.query_one(&lock, &[]),
        tx.query(&requests, &request_params),
        tx.query(&keys, &key_params),
        tx.query(&versions_q, &stream_params),
    )
    .map_err(pg_error)?;
    let start = unsigned(head_row.get(0), "head")?;
    let mut recorded: HashMap<String, RequestRecord> = HashMap::new();
    for row in request_rows {
        let key = crate::store::request_key(row.get(0), row.get(1));
        recorded.insert(
            key.clone(),
            RequestRecord {
                request_id: key,
                first_position: unsigned(row.get(2), "position")?,
                last_position: unsigned(row.get(3), "position")?,
                fingerprint: row.get(4),
            },
        );
    }
    let mut existing_keys: HashSet<String> = key_rows.into_iter().map(|r| r.get(0)).collect();
    let mut versions: HashMap<String, u64> = HashMap::new();
    for row in version_rows {
        let stream: Vec<u8> = row.get(0);
        versions.insert(
            String::from_utf8_lossy(&stream).into_owned(),
            unsigned(row.get(1), "version")?,
        );
    }

    // Each commit checked in order against the database and the commits
    // before it in the group.
    let mut head = start;
    let mut rows = Rows::default();
    let mut outcomes = Vec::with_capacity(group.len());
    for commit in group {
        if let Some(key) = commit.request_key() {
            if let Some(record) = recorded.get(&key) {
                outcomes.push(Err(Error::DuplicateRequest {
                    record: record.clone(),
                }));
                continue;
            }
        }
        if let Some((id, _)) = commit
            .keys
            .created
            .iter()
            .find(|(id, _)| existing_keys.contains(id))
        {
            outcomes.push(Err(Error::KeyExists(id.clone())));
            continue;
        }
        let mut envelopes = match plan(commit, head, |s| versions.get(s).copied().unwrap_or(0)) {
            Ok(envelopes) => envelopes,
            Err(e) => {
                outcomes.push(Err(e));
                continue;
            }
        };
        for env in &mut envelopes {
            rows.positions.push(signed(env.position)?);
            rows.streams.push(env.stream.as_bytes().to_vec());
            rows.versions.push(signed(env.stream_version)?);
            rows.records.push(codec::encode(env));
            set_version(&mut versions, &env.stream, env.stream_version);
        }
        head = envelopes.last().map_or(head, |e| e.position);
        if let Some(record) = request_record(commit, &envelopes) {
            rows.actors.push(commit.actor.clone());
            rows.request_ids.push(commit.request_id.clone());
            recorded.insert(record.request_id.clone(), record.clone());
            rows.requests.push(record);
        }
        for (id, wrapped) in &commit.keys.created {
            existing_keys.insert(id.clone());
            rows.keys_created.push((id.clone(), wrapped.clone()));
        }
        rows.keys_destroyed
            .extend(commit.keys.destroyed.iter().cloned());
        outcomes.push(Ok(envelopes));
    }

    if head > start {
        write_rows(&tx, &rows, &versions, head).await?;
        tx.commit().await.map_err(pg_error)?;
        publish(published, head);
    } else {
        // Nothing to write; the head read tells this replica where the
        // log is (a conflict is decided again after catching up).
        drop(tx);
        publish(published, start);
    }
    Ok(outcomes)
}

/// Writes the accepted commits' rows: a fixed number of statements, sent
/// together in one round trip.
async fn write_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    rows: &Rows,
    versions: &HashMap<String, u64>,
    head: u64,
) -> Result<()> {
    // One row per stream the group touched, at its last version.
    let touched: HashSet<&[u8]> = rows.streams.iter().map(Vec::as_slice).collect();
    let (names, last): (Vec<&[u8]>, Vec<i64>) = touched
        .into_iter()
        .map(|s| {
            let v = versions
                .get(std::str::from_utf8(s).unwrap_or_default())
                .copied()
                .unwrap_or(0);
            signed(v).map(|v| (s, v))
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let firsts: Vec<i64> = rows
        .requests
        .iter()
        .map(|r| signed(r.first_position))
        .collect::<Result<_>>()?;
    let lasts: Vec<i64> = rows
        .requests
        .iter()
        .map(|r| signed(r.last_position))
        .collect::<Result<_>>()?;
    let fingerprints: Vec<&[u8]> = rows
        .requests
        .iter()
        .map(|r| r.fingerprint.as_slice())
        .collect();
    let (key_ids, wrapped): (Vec<&str>, Vec<&[u8]>) = rows
        .keys_created
        .iter()
        .map(|(id, w)| (id.as_str(), w.as_slice()))
        .unzip();
    let head = signed(head)?;
    let (events, streams, requests, keys, destroy, moved) = tokio::try_join!(
        tx.prepare_cached(
            "INSERT INTO registrar_events (position, stream, stream_version, record) \
             SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bigint[], $4::bytea[])",
        ),
        tx.prepare_cached(
            "INSERT INTO registrar_streams (stream, version) \
             SELECT * FROM UNNEST($1::bytea[], $2::bigint[]) \
             ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version",
        ),
        tx.prepare_cached(
            "INSERT INTO registrar_requests \
             (actor, request_id, first_position, last_position, fingerprint) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[])",
        ),
        tx.prepare_cached(
            "INSERT INTO registrar_keys (credential_id, wrapped) \
             SELECT * FROM UNNEST($1::text[], $2::bytea[])",
        ),
        tx.prepare_cached("DELETE FROM registrar_keys WHERE credential_id = ANY($1)"),
        // The head moves and the replicas hear of it, in one statement.
        tx.prepare_cached(
            "WITH moved AS (UPDATE registrar_head SET position = $1 WHERE id = 1 RETURNING position) \
             SELECT pg_notify($2, position::text) FROM moved",
        ),
    )
    .map_err(pg_error)?;
    // Inserts before the delete: a key created and destroyed within the
    // group is gone at the end. Statements on one connection run in the
    // order they were sent.
    let event_params: [&Param<'_>; 4] = [
        &rows.positions,
        &rows.streams,
        &rows.versions,
        &rows.records,
    ];
    let stream_params: [&Param<'_>; 2] = [&names, &last];
    let request_params: [&Param<'_>; 5] = [
        &rows.actors,
        &rows.request_ids,
        &firsts,
        &lasts,
        &fingerprints,
    ];
    let key_params: [&Param<'_>; 2] = [&key_ids, &wrapped];
    let destroy_params: [&Param<'_>; 1] = [&rows.keys_destroyed];
    let moved_params: [&Param<'_>; 2] = [&head, &CHANNEL];
    tokio::try_join!(
        tx.execute(&events, &event_params),
        tx.execute(&streams, &stream_params),
        tx.execute(&requests, &request_params),
        tx.execute(&keys, &key_params),
        tx.execute(&destroy, &destroy_params),
        tx.query_one(&moved, &moved_params),
    )
    .map_err(pg_error)?;
    Ok(())
}
