//! Filling an empty database from another store (`registrar store copy`):
//! records at their positions, request records and data keys, in one
//! transaction, so a copy that fails leaves the database empty.

use super::{codec, pg_error, pool_error, signed, Error, PgStore, Result};
use crate::store::{Envelope, RequestRecord};

/// Rows per INSERT.
const BATCH: usize = 1000;

/// What a copy writes: everything a store holds.
#[derive(Debug, Default)]
pub struct Import {
    /// The log's id, kept so resume tokens stay valid.
    pub log_id: String,
    /// Every record, in position order from 1.
    pub records: Vec<Envelope>,
    /// Every request record (its `request_id` is the request key: actor,
    /// NUL, request id).
    pub requests: Vec<RequestRecord>,
    /// Every wrapped data key.
    pub keys: Vec<(String, Vec<u8>)>,
    /// The key store's meta values.
    pub key_meta: Vec<(String, Vec<u8>)>,
}

impl PgStore {
    /// Writes `import` into this database, which must be empty: no record,
    /// no request record, no data key. Refused otherwise, naming what it
    /// holds.
    pub async fn import(&self, import: &Import) -> Result<()> {
        let mut client = self.log.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let row = tx
            .query_one(
                "SELECT (SELECT position FROM registrar_head WHERE id = 1 FOR UPDATE), \
                 (SELECT count(*) FROM registrar_requests), (SELECT count(*) FROM registrar_keys)",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let (head, requests, keys): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if head != 0 || requests != 0 || keys != 0 {
            return Err(Error::storage(format!(
                "the target database is not empty ({head} records, {requests} request records, {keys} data keys): copy only into a new database"
            )));
        }
        for (i, e) in import.records.iter().enumerate() {
            if e.position != i as u64 + 1 {
                return Err(Error::storage(format!(
                    "the source log has position {} where {} belongs",
                    e.position,
                    i + 1
                )));
            }
        }
        for chunk in import.records.chunks(BATCH) {
            let positions: Vec<i64> = chunk
                .iter()
                .map(|e| signed(e.position))
                .collect::<Result<_>>()?;
            let streams: Vec<&[u8]> = chunk.iter().map(|e| e.stream.as_bytes()).collect();
            let versions: Vec<i64> = chunk
                .iter()
                .map(|e| signed(e.stream_version))
                .collect::<Result<_>>()?;
            let records: Vec<Vec<u8>> = chunk
                .iter()
                .map(|e| codec::encode(&mut e.clone()))
                .collect();
            tx.execute(
                "INSERT INTO registrar_events (position, stream, stream_version, record) \
                 SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bigint[], $4::bytea[])",
                &[&positions, &streams, &versions, &records],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.execute(
            "INSERT INTO registrar_streams (stream, version) \
             SELECT stream, max(stream_version) FROM registrar_events GROUP BY stream",
            &[],
        )
        .await
        .map_err(pg_error)?;
        for r in &import.requests {
            let (actor, request_id) = r.request_id.split_once('\0').ok_or_else(|| {
                Error::storage(format!("request key {:?} names no caller", r.request_id))
            })?;
            tx.execute(
                "INSERT INTO registrar_requests \
                 (actor, request_id, first_position, last_position, fingerprint) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &actor,
                    &request_id,
                    &signed(r.first_position)?,
                    &signed(r.last_position)?,
                    &r.fingerprint,
                ],
            )
            .await
            .map_err(pg_error)?;
        }
        for (id, wrapped) in &import.keys {
            tx.execute(
                "INSERT INTO registrar_keys (credential_id, wrapped) VALUES ($1, $2)",
                &[id, wrapped],
            )
            .await
            .map_err(pg_error)?;
        }
        for (name, value) in &import.key_meta {
            tx.execute(
                "INSERT INTO registrar_key_meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[name, value],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.execute(
            "UPDATE registrar_meta SET value = $1 WHERE name = 'log_id'",
            &[&import.log_id],
        )
        .await
        .map_err(pg_error)?;
        let last = import.records.last().map_or(0, |e| e.position);
        tx.execute(
            "UPDATE registrar_head SET position = $1 WHERE id = 1",
            &[&signed(last)?],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(())
    }
}
