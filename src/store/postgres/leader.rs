//! Leadership of background work among replicas (DESIGN §6): a
//! session-level advisory lock, held on a connection of its own. The
//! database frees it the moment that connection ends (the holder stopped,
//! crashed or lost the network), so another replica takes over at its next
//! try, within `RETRY`.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{pg_error, Result};

/// How often a replica that does not lead tries to.
const RETRY: Duration = Duration::from_secs(2);

/// Tries for one lock on behalf of one kind of background work.
#[derive(Clone)]
pub struct Elector {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    key: i64,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector").field("key", &self.key).finish()
    }
}

/// The lock, held while this lives (dropping it closes its connection).
#[derive(Debug)]
pub struct Lease {
    client: Client,
    ended: watch::Receiver<bool>,
}

impl Elector {
    pub(super) fn new(config: tokio_postgres::Config, tls: MakeRustlsConnect, key: i64) -> Self {
        Self { config, tls, key }
    }

    /// Returns an elector for another kind of work, on the same database.
    pub(super) fn sibling(&self, key: i64) -> Self {
        Self {
            config: self.config.clone(),
            tls: self.tls.clone(),
            key,
        }
    }

    /// Waits until this replica holds the lock.
    pub async fn lead(&self) -> Lease {
        let mut waiting: Option<(Client, watch::Receiver<bool>)> = None;
        loop {
            if waiting.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                waiting = match self.connect().await {
                    Ok(pair) => Some(pair),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot reach the database to lead");
                        None
                    }
                };
            }
            if let Some((client, _)) = &waiting {
                match client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&self.key])
                    .await
                {
                    Ok(row) if row.get::<_, bool>(0) => {
                        let (client, ended) = waiting.take().expect("checked above");
                        return Lease { client, ended };
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot try the leader lock"),
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn connect(&self) -> Result<(Client, watch::Receiver<bool>)> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(pg_error)?;
        let (tx, ended) = watch::channel(false);
        tokio::spawn(async move {
            let _ = connection.await;
            let _ = tx.send(true);
        });
        Ok((client, ended))
    }
}

impl Lease {
    /// Returns whether the lock is still held: its connection answers.
    /// Asked before each piece of work, so a replica cut off from the
    /// database stops before another one takes over.
    pub async fn held(&self) -> bool {
        !self.client.is_closed() && self.client.simple_query("SELECT 1").await.is_ok()
    }

    /// Completes when the lock's connection ends.
    pub async fn lost(&self) {
        let mut ended = self.ended.clone();
        // A dropped sender means the connection's task ended: lost too.
        let _ = ended.wait_for(|ended| *ended).await;
    }
}
