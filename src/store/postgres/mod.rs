//! The shared `EventLog` and `KeyStore` on PostgreSQL (DESIGN §6), for
//! several replicas over one database. The only module that names
//! tokio-postgres.
//!
//! A commit is one transaction: it locks the head row (so positions are
//! gapless and in commit order), checks the request record, the data keys
//! it creates and its streams' versions, inserts its records, its request
//! record and its data keys, deletes the keys it destroys, moves the head
//! and sends a notification; all or nothing. Each replica follows the head
//! with LISTEN and a poll every second as a safety net, and never reads
//! past the head it has seen. The schema is created and migrated at open
//! under an advisory lock.

mod import;
mod keys;
mod leader;
mod schema;
mod tls;
mod writer;

pub use import::Import;
pub use keys::PgKeys;
pub use leader::{Elector, Lease};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    check_shape, codec, missing, Commit, Envelope, Error, EventLog, KeyStore, RequestRecord, Result,
};

/// The channel commits notify and replicas listen on.
const CHANNEL: &str = "registrar_log";
/// How often a replica reads the head even without a notification.
const POLL: Duration = Duration::from_secs(1);
/// The advisory lock key of background work's leader ("rgr" and 2; the
/// schema's migrations use another).
const LEADER_LOCK: i64 = 0x0072_6772_0002;
/// The advisory lock key of the background credential check's leader.
const VERIFY_LOCK: i64 = 0x0072_6772_0003;
/// The least time between two reads of the head on a caller's behalf.
const REFRESH_EVERY: Duration = Duration::from_millis(50);
/// The longest a call waits for a connection (from the pool, or a new one).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest one statement may run (a commit waiting on the head row's
/// lock behind a stalled one, say) before it fails.
const STATEMENT_TIMEOUT: &str = "10s";

/// A PostgreSQL store: the log and the key store over one pool, and the
/// task that follows the head.
#[derive(Debug)]
pub struct PgStore {
    log: Arc<PgLog>,
    keys: Arc<PgKeys>,
    tailer: JoinHandle<()>,
    writer: JoinHandle<()>,
    elector: Elector,
    observer: crate::store::WriteObserver,
}

/// Whether the database answered the last time it was asked: set by the
/// head's follower and by every commit, read by the health service.
#[derive(Debug, Clone)]
struct Reachable(Arc<watch::Sender<bool>>);

impl Reachable {
    /// Records the outcome of a call to the database and passes it on.
    fn note<T>(&self, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) => self.set(true),
            Err(Error::Unavailable(_)) => self.set(false),
            Err(_) => {}
        }
        result
    }

    fn set(&self, up: bool) {
        self.0
            .send_if_modified(|now| std::mem::replace(now, up) != up);
    }
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL) with at most `pool_size`
    /// connections, creates or migrates the schema, and starts following
    /// the head. A database of a newer schema is refused.
    pub async fn connect(url: &str, pool_size: usize, ca: Option<&Path>) -> Result<Self> {
        let tls::Connection {
            mut config,
            tls: connector,
        } = tls::connection(url, ca)?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .options(format!("-c statement_timeout={STATEMENT_TIMEOUT}"));
        let manager = Manager::from_config(
            config.clone(),
            connector.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::storage(format!("the connection pool: {e}")))?;
        let log_id = {
            let mut client = pool.get().await.map_err(pool_error)?;
            schema::migrate(&mut client).await?
        };
        let head_now = read_head(&pool).await?;
        let head = Arc::new(watch::Sender::new(head_now));
        let reachable = Reachable(Arc::new(watch::Sender::new(true)));
        let elector = Elector::new(config.clone(), connector.clone(), LEADER_LOCK);
        let tailer = tokio::spawn(follow(
            (config, connector),
            pool.clone(),
            Arc::clone(&head),
            reachable.clone(),
        ));
        let observer = crate::store::WriteObserver::default();
        let (writer, writer_task) = writer::spawn(
            pool.clone(),
            Arc::clone(&head),
            reachable.clone(),
            Arc::clone(&observer),
        );
        let log = Arc::new(PgLog {
            pool: pool.clone(),
            head,
            log_id,
            reachable,
            last_refresh: tokio::sync::Mutex::new(None),
            writer,
        });
        let keys = Arc::new(PgKeys { pool });
        Ok(Self {
            log,
            keys,
            tailer,
            writer: writer_task,
            elector,
            observer,
        })
    }

    /// Has the writer report each group it writes to `metrics`.
    pub fn observe(&self, metrics: crate::metrics::StoreMetrics) {
        let _ = self.observer.set(metrics);
    }

    /// Returns a handle to the event log.
    pub fn log(&self) -> Arc<PgLog> {
        Arc::clone(&self.log)
    }

    /// Returns a handle to the key store.
    pub fn keys(&self) -> Arc<PgKeys> {
        Arc::clone(&self.keys)
    }

    /// Returns the elector of the replica that runs background work (the
    /// ECR refresher): one replica at a time holds its lock.
    pub fn elector(&self) -> Elector {
        self.elector.clone()
    }

    /// Returns the elector of the replica that checks credentials in the
    /// background: one replica at a time, not necessarily the ECR one.
    pub fn verify_elector(&self) -> Elector {
        self.elector.sibling(VERIFY_LOCK)
    }

    /// Returns whether the database answered the last call (true at
    /// first), changing as calls fail and succeed again.
    pub fn reachable(&self) -> watch::Receiver<bool> {
        self.log.reachable.0.subscribe()
    }

    /// Stops following the head and closes the pool's connections.
    pub async fn close(self) {
        self.tailer.abort();
        let _ = self.tailer.await;
        // A group in flight is abandoned: its callers get `Closed` and a
        // retry settles it, as after a lost connection.
        self.writer.abort();
        let _ = self.writer.await;
        self.log.pool.close();
    }
}

/// Sorts a database error: a lost or refused connection, a server
/// shutting down or not yet accepting, is `Unavailable` (retryable, the
/// replica recovers by itself); anything else is a storage fault.
fn pg_error(e: tokio_postgres::Error) -> Error {
    let connection = e.is_closed()
        || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
        || e.code().is_some_and(|c| {
            let code = c.code();
            // Class 08: connection exception; 57P0x: shutting down, cannot
            // connect now; 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        });
    if connection {
        // The causes say why: "error performing TLS handshake" alone does
        // not name the certificate that was refused.
        Error::Unavailable(crate::telemetry::error_chain(&e))
    } else {
        Error::Storage {
            source: Box::new(e),
        }
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => pg_error(e),
        PoolError::Closed => Error::Closed,
        other => Error::Unavailable(format!("no database connection: {other}")),
    }
}

/// Converts a position or version from the database, which stores them as
/// `bigint`; a negative one is damage.
fn unsigned(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Corrupt {
        position: 0,
        reason: format!("negative {what} {value}"),
    })
}

fn signed(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::storage("a position past what bigint holds"))
}

async fn read_head(pool: &Pool) -> Result<u64> {
    let client = pool.get().await.map_err(pool_error)?;
    let row = client
        .query_one("SELECT position FROM registrar_head WHERE id = 1", &[])
        .await
        .map_err(pg_error)?;
    unsigned(row.get(0), "head")
}

/// Moves the published head forward, never back.
fn publish(head: &watch::Sender<u64>, position: u64) {
    head.send_if_modified(|h| {
        if position > *h {
            *h = position;
            true
        } else {
            false
        }
    });
}

/// Follows the head: LISTEN on a connection of its own, and a read of the
/// head row at every notification and at least every `POLL`, so a lost
/// notification (or a listener that is reconnecting) delays a change by a
/// second at most. The listener reconnects with backoff when the database
/// goes away; the poll goes on meanwhile.
async fn follow(
    connect: (tokio_postgres::Config, MakeRustlsConnect),
    pool: Pool,
    head: Arc<watch::Sender<u64>>,
    reachable: Reachable,
) {
    let mut listening: Option<(UnboundedReceiver<()>, tokio_postgres::Client)> = None;
    let mut next_try = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let closed = listening.as_ref().is_none_or(|(_, c)| c.is_closed());
        if closed && tokio::time::Instant::now() >= next_try {
            match listen(&connect.0, connect.1.clone()).await {
                Ok(pair) => {
                    listening = Some(pair);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for log notifications; polling");
                    listening = None;
                    next_try = tokio::time::Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        match &mut listening {
            Some((notified, _)) => {
                tokio::select! {
                    got = notified.recv() => if got.is_none() { listening = None },
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            None => tokio::time::sleep(POLL).await,
        }
        match reachable.note(read_head(&pool).await) {
            Ok(position) => publish(&head, position),
            Err(e) => tracing::warn!(error = %e, "cannot read the log's head"),
        }
    }
}

/// Opens a connection that LISTENs; returns a receiver woken at every
/// notification (closed when the connection ends) and the client to keep.
async fn listen(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
) -> Result<(UnboundedReceiver<()>, tokio_postgres::Client)> {
    let (client, mut connection) = config.connect(tls).await.map_err(pg_error)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(pg_error)?;
    Ok((rx, client))
}

/// The PostgreSQL event log; cheap to share as `Arc<dyn EventLog>`.
#[derive(Debug)]
pub struct PgLog {
    pool: Pool,
    head: Arc<watch::Sender<u64>>,
    log_id: String,
    reachable: Reachable,
    last_refresh: tokio::sync::Mutex<Option<std::time::Instant>>,
    writer: tokio::sync::mpsc::Sender<writer::Pending>,
}

#[async_trait::async_trait]
impl EventLog for PgLog {
    async fn append(&self, commit: Commit) -> Result<Vec<Envelope>> {
        check_shape(&commit)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(writer::Pending { commit, reply })
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    fn head(&self) -> u64 {
        *self.head.borrow()
    }

    async fn read(&self, from: u64, max: usize) -> Result<Vec<Envelope>> {
        let Some((from, last)) = super::read_range(from, max, self.head()) else {
            return Ok(Vec::new());
        };
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                "SELECT position, record FROM registrar_events \
                 WHERE position BETWEEN $1 AND $2 ORDER BY position",
                &[&signed(from)?, &signed(last)?],
            )
            .await
            .map_err(pg_error)?;
        let mut records = Vec::with_capacity(rows.len());
        let mut expected = from;
        for row in rows {
            let position = unsigned(row.get(0), "position")?;
            if position != expected {
                return Err(missing(expected));
            }
            let bytes: &[u8] = row.get(1);
            records.push(codec::decode_verified(bytes, position)?);
            expected += 1;
        }
        if expected <= last {
            return Err(missing(expected));
        }
        Ok(records)
    }

    async fn read_stream(&self, stream: &str, up_to: u64) -> Result<Vec<Envelope>> {
        let limit = up_to.min(self.head());
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                "SELECT position, record FROM registrar_events \
                 WHERE stream = $1 AND position <= $2 ORDER BY stream_version",
                &[&stream.as_bytes(), &signed(limit)?],
            )
            .await
            .map_err(pg_error)?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let position = unsigned(row.get(0), "position")?;
            let bytes: &[u8] = row.get(1);
            let env = codec::decode_verified(bytes, position)?;
            if env.stream != stream {
                return Err(Error::Corrupt {
                    position,
                    reason: format!("the record of stream {stream:?} names another stream"),
                });
            }
            records.push(env);
        }
        Ok(records)
    }

    async fn stream_version(&self, stream: &str) -> Result<u64> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(stream_version), 0) FROM registrar_events \
                 WHERE stream = $1 AND position <= $2",
                &[&stream.as_bytes(), &signed(self.head())?],
            )
            .await
            .map_err(pg_error)?;
        unsigned(row.get(0), "version")
    }

    async fn find_request(&self, actor: &str, request_id: &str) -> Result<Option<RequestRecord>> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let key = super::request_key(actor, request_id);
        let client = self.pool.get().await.map_err(pool_error)?;
        let Some(row) = client
            .query_opt(
                "SELECT first_position, last_position, fingerprint \
                 FROM registrar_requests WHERE actor = $1 AND request_id = $2",
                &[&actor, &request_id],
            )
            .await
            .map_err(pg_error)?
        else {
            return Ok(None);
        };
        let record = RequestRecord {
            request_id: key,
            first_position: unsigned(row.get(0), "position")?,
            last_position: unsigned(row.get(1), "position")?,
            fingerprint: row.get(2),
        };
        // Committed, but this replica answers only up to the head it has seen.
        Ok((record.last_position <= self.head()).then_some(record))
    }

    async fn refresh_head(&self) -> Result<u64> {
        // One read of the head row at a time and at most one per
        // REFRESH_EVERY: callers that cannot make this replica wait (an
        // unknown token, say) cannot make it flood the database.
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
            return Ok(self.head());
        }
        let position = self.reachable.note(read_head(&self.pool).await)?;
        *last = Some(std::time::Instant::now());
        publish(&self.head, position);
        Ok(self.head())
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn log_id(&self) -> &str {
        &self.log_id
    }
}
