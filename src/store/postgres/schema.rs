//! The PostgreSQL schema: created and migrated at open under an advisory
//! lock, so replicas starting together do not race; its version recorded,
//! a newer one refused.

use super::{pg_error, Error, Result};

/// The schema this build writes and reads.
pub(super) const SCHEMA_VERSION: i64 = 1;
/// The advisory lock key that serializes migrations ("rgr" and a version).
const MIGRATION_LOCK: i64 = 0x0072_6772_0001;

/// Stream names are `bytea`: the log's contract allows any string, and
/// `text` cannot hold a NUL.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS registrar_meta (
    name text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS registrar_head (
    id integer PRIMARY KEY CHECK (id = 1),
    position bigint NOT NULL CHECK (position >= 0)
);
INSERT INTO registrar_head (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS registrar_events (
    position bigint PRIMARY KEY,
    stream bytea NOT NULL,
    stream_version bigint NOT NULL,
    record bytea NOT NULL,
    UNIQUE (stream, stream_version)
);
CREATE TABLE IF NOT EXISTS registrar_streams (
    stream bytea PRIMARY KEY,
    version bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS registrar_requests (
    actor text NOT NULL,
    request_id text NOT NULL,
    first_position bigint NOT NULL,
    last_position bigint NOT NULL,
    fingerprint bytea NOT NULL,
    PRIMARY KEY (actor, request_id)
);
CREATE TABLE IF NOT EXISTS registrar_keys (
    credential_id text PRIMARY KEY,
    wrapped bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS registrar_key_meta (
    name text PRIMARY KEY,
    value bytea NOT NULL
);
";

/// Creates or checks the schema and returns the log's id.
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<String> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    let result = migrate_locked(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error);
    let log_id = result?;
    unlocked?;
    Ok(log_id)
}

async fn migrate_locked(client: &mut deadpool_postgres::Client) -> Result<String> {
    let tx = client.transaction().await.map_err(pg_error)?;
    let exists = tx
        .query_one("SELECT to_regclass('registrar_meta') IS NOT NULL", &[])
        .await
        .map_err(pg_error)?
        .get::<_, bool>(0);
    if exists {
        let found = tx
            .query_opt(
                "SELECT value FROM registrar_meta WHERE name = 'schema_version'",
                &[],
            )
            .await
            .map_err(pg_error)?
            .map(|r| r.get::<_, String>(0));
        if let Some(found) = found {
            let version: i64 = found.parse().map_err(|_| Error::Corrupt {
                position: 0,
                reason: format!("schema version {found:?} is not a number"),
            })?;
            if version > SCHEMA_VERSION {
                return Err(Error::UnsupportedFormat {
                    found: format!("PostgreSQL schema {version}"),
                    reads: "PostgreSQL schemas up to 1",
                });
            }
        }
    }
    tx.batch_execute(SCHEMA_V1).await.map_err(pg_error)?;
    tx.execute(
        "INSERT INTO registrar_meta (name, value) VALUES ('schema_version', $1) \
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&SCHEMA_VERSION.to_string()],
    )
    .await
    .map_err(pg_error)?;
    tx.execute(
        "INSERT INTO registrar_meta (name, value) VALUES ('log_id', $1) \
         ON CONFLICT (name) DO NOTHING",
        &[&uuid::Uuid::new_v4().to_string()],
    )
    .await
    .map_err(pg_error)?;
    let log_id = tx
        .query_one(
            "SELECT value FROM registrar_meta WHERE name = 'log_id'",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get::<_, String>(0);
    tx.commit().await.map_err(pg_error)?;
    Ok(log_id)
}
