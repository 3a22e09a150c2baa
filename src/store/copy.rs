//! `registrar store copy`: moves a stopped server's sled data directory
//! into an empty PostgreSQL database with every position, request record
//! and data key as it was (and the log's id, so resume tokens stay
//! valid), then reads everything back from the database and compares.

use std::path::Path;

use super::postgres::{Import, PgStore};
use super::sled::SledStore;
use super::{Error, EventLog, KeyStore, Result};

/// Records read from the source per step.
const BATCH: usize = 4096;

/// What a copy moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Log records.
    pub records: u64,
    /// Request records.
    pub requests: u64,
    /// Data keys.
    pub keys: u64,
}

/// Copies the sled store in `from` into the database at `url` (which must
/// be empty) and verifies the copy.
pub async fn sled_to_postgres(from: &Path, url: &str, ca: Option<&Path>) -> Result<Copied> {
    if !from.join("db").exists() && !from.join("conf").exists() {
        return Err(Error::storage(format!(
            "{} holds no registrar data directory",
            from.display()
        )));
    }
    let dir = from.to_path_buf();
    let source = tokio::task::spawn_blocking(move || SledStore::open(&dir))
        .await
        .map_err(|e| Error::storage(format!("opening the data directory failed: {e}")))?
        .map_err(|e| match e {
            Error::Storage { source } => Error::storage(format!(
                "{source} (is the server still running? stop it before copying)"
            )),
            other => other,
        })?;
    let result = copy(&source, url, ca).await;
    source.close().await?;
    result
}

async fn copy(source: &SledStore, url: &str, ca: Option<&Path>) -> Result<Copied> {
    let (log, keys) = (source.log(), source.keys());
    let import = Import {
        log_id: log.log_id().to_owned(),
        records: read_all(log.as_ref()).await?,
        requests: log.request_records()?,
        keys: keys.all().await?,
        key_meta: match keys.meta("key_id").await? {
            Some(value) => vec![("key_id".to_owned(), value)],
            None => Vec::new(),
        },
    };
    let target = PgStore::connect(url, 4, ca).await?;
    let imported = target.import(&import).await;
    target.close().await;
    imported?;
    // Read back through a store opened afresh, as a replica would.
    let copy = PgStore::connect(url, 4, ca).await?;
    let verified = verify(&import, &copy).await;
    copy.close().await;
    verified?;
    Ok(Copied {
        records: import.records.len() as u64,
        requests: import.requests.len() as u64,
        keys: import.keys.len() as u64,
    })
}

async fn read_all(log: &dyn EventLog) -> Result<Vec<super::Envelope>> {
    let mut all = Vec::new();
    loop {
        let batch = log.read(all.len() as u64 + 1, BATCH).await?;
        if batch.is_empty() {
            return Ok(all);
        }
        all.extend(batch);
    }
}

/// Compares everything in the database with what was imported.
async fn verify(import: &Import, copy: &PgStore) -> Result<()> {
    let mismatch = |what: String| Err(Error::storage(format!("the copy differs: {what}")));
    let log = copy.log();
    if log.log_id() != import.log_id {
        return mismatch(format!("log id {} for {}", log.log_id(), import.log_id));
    }
    let records = read_all(log.as_ref()).await?;
    if records.len() != import.records.len() {
        return mismatch(format!(
            "{} records for {}",
            records.len(),
            import.records.len()
        ));
    }
    if let Some((got, want)) = records.iter().zip(&import.records).find(|(a, b)| a != b) {
        return mismatch(format!(
            "the record at position {}",
            want.position.max(got.position)
        ));
    }
    for r in &import.requests {
        let (actor, request_id) = r.request_id.split_once('\0').unwrap_or(("", ""));
        if log.find_request(actor, request_id).await?.as_ref() != Some(r) {
            return mismatch(format!("request record {request_id:?} of {actor:?}"));
        }
    }
    let keys = copy.keys();
    if keys.list().await?.len() != import.keys.len() {
        return mismatch("the number of data keys".to_owned());
    }
    for (id, wrapped) in &import.keys {
        if keys.get(id).await?.as_ref() != Some(wrapped) {
            return mismatch(format!("the data key of credential {id}"));
        }
    }
    for (name, value) in &import.key_meta {
        if keys.meta(name).await?.as_ref() != Some(value) {
            return mismatch(format!("key meta {name}"));
        }
    }
    Ok(())
}
