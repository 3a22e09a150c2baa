//! Every use case, with the caller's role and scope checked here: commands
//! (`execute.rs`, the one writer, with each commit's data keys), reads
//! (`query.rs`), pulls, host files and pull secrets (`pull.rs`), watches
//! (`watch.rs`), callers and tokens (`auth.rs`), data keys and their
//! rotation (`keys.rs`). The `App` itself: opening over a log and a key
//! store, and what its parts share.

mod admission;
mod auth;
mod clock;
mod error;
mod execute;
mod history;
mod keys;
mod pull;
mod query;
mod verify;
mod watch;

use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

pub use admission::{Admission, ImageVerdict, NotAdmissible};
pub use auth::{IssuedToken, TOKEN_PREFIX};
pub use clock::{Clock, SystemClock};
pub use error::{Error, Result};
pub use execute::MAX_REQUEST_ID_LEN;
pub use history::{Action, HistoryEntry, HistoryPage};
pub use keys::DataKeys;
pub use pull::{HostRegistry, OpenCredential, OpenRegistry, PullAnswer, PullOutcome};
pub(crate) use verify::check_sendable;
pub use verify::Trigger;
pub use watch::{Change, Cursor, Item, ItemRef, WatchStart};

use crate::audit::Audit;
use crate::crypto::Keyring;
use crate::domain::error::Error as Rule;
use crate::domain::quota::Quotas;
use crate::domain::settings::Settings;
use crate::domain::state::{Environment, Registry, State, Token};
use crate::metrics::Metrics;
use crate::projection::Projection;
use crate::store::{EventLog, KeyStore};

/// The application service.
#[derive(Debug, Clone)]
pub struct App {
    log: Arc<dyn EventLog>,
    keys: DataKeys,
    kek: Arc<Keyring>,
    projection: Projection,
    configured_admin: Option<[u8; 32]>,
    clock: Arc<dyn Clock>,
    quotas: Quotas,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    verifier: crate::verify::Verifier,
}

/// The object a command's answer shows, as of the command's commit.
#[derive(Debug, Clone)]
pub enum View {
    /// An environment.
    Environment(Environment),
    /// A registry.
    Registry(Box<Registry>),
    /// The settings.
    Settings(Settings),
    /// A token.
    Token(Token),
    /// The object is gone.
    Removed,
}

/// A command's answer: the object as its commit left it, and the commit's
/// position (for a retry, the first call's).
#[derive(Debug, Clone)]
pub struct Executed {
    /// The object.
    pub view: View,
    /// The log position of the commit's last event.
    pub revision: u64,
}

/// The key-encryption keys in force and what they wrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The key that wraps new data keys.
    pub current_key_id: String,
    /// Every key held, current first.
    pub loaded_key_ids: Vec<String>,
    /// Data keys per wrapping key id.
    pub usage: std::collections::BTreeMap<String, u64>,
    /// Data keys re-wrapped by the call that returned this.
    pub rewrapped: u64,
    /// Data keys not yet wrapped by the current key.
    pub remaining: u64,
}

impl View {
    /// Returns the registry the answer shows; NOT_FOUND when the command's
    /// commit left none (it was deleted since, for a replayed request).
    pub fn into_registry(self, id: &str) -> Result<Registry> {
        match self {
            View::Registry(r) => Ok(*r),
            _ => Err(Rule::NotFound {
                what: "registry",
                id: id.to_owned(),
            }
            .into()),
        }
    }

    /// Returns the environment the answer shows; NOT_FOUND when none.
    pub fn into_environment(self, id: &str) -> Result<Environment> {
        match self {
            View::Environment(e) => Ok(e),
            _ => Err(Rule::NotFound {
                what: "environment",
                id: id.to_owned(),
            }
            .into()),
        }
    }

    /// Returns the settings the answer shows.
    pub fn into_settings(self) -> Result<Settings> {
        match self {
            View::Settings(s) => Ok(s),
            _ => {
                Err(Rule::FailedPrecondition("the command produced no settings".to_owned()).into())
            }
        }
    }
}

impl App {
    /// Opens the app over a log and a key store: checks the key-encryption
    /// key, replays the log, and loads the data keys of live credentials.
    pub async fn open(
        log: Arc<dyn EventLog>,
        key_store: Arc<dyn KeyStore>,
        keys: impl Into<Keyring>,
        configured_admin: Option<&str>,
    ) -> Result<Self> {
        Self::open_from(log, key_store, keys, configured_admin, State::default()).await
    }

    /// Opens the app as [`App::open`] does, from a view already folded up
    /// to its position (the store's check at open builds it in the same
    /// pass); only the records after it are replayed.
    pub async fn open_from(
        log: Arc<dyn EventLog>,
        key_store: Arc<dyn KeyStore>,
        keys: impl Into<Keyring>,
        configured_admin: Option<&str>,
        view: State,
    ) -> Result<Self> {
        let kek = Arc::new(keys.into());
        // The recorded id is the key that was current when last recorded:
        // it must be held (current, or kept after a new one in a rotation);
        // the current key's id is recorded from now on.
        let current = kek.current().key_id();
        let recorded = key_store.meta("key_id").await?;
        if let Some(id) = &recorded {
            kek.check_key_id(&String::from_utf8_lossy(id))?;
        }
        if recorded.as_deref() != Some(current.as_bytes()) {
            key_store.set_meta("key_id", current.into_bytes()).await?;
        }
        let projection = Projection::start_from(Arc::clone(&log), view).await?;
        let keys = DataKeys::new(key_store, Arc::clone(&kek));
        keys.load(|| async {
            projection.wait_for(log.head()).await;
            let state = projection.read();
            state.live_credential_ids().map(str::to_owned).collect()
        })
        .await?;
        Ok(Self {
            log,
            keys,
            kek,
            projection,
            configured_admin: configured_admin.map(|t| Sha256::digest(t.as_bytes()).into()),
            clock: Arc::new(SystemClock),
            quotas: Quotas::default(),
            metrics: Arc::new(Metrics::new()),
            audit: Arc::new(Audit::disabled()),
            verifier: crate::verify::Verifier::default(),
        })
    }

    /// Returns the app deciding with `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Returns the app counting into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Returns the app writing its audit trail to `audit`.
    pub fn with_audit(mut self, audit: Arc<Audit>) -> Self {
        self.audit = audit;
        self
    }

    /// Returns the app logging in to registries with `verifier`.
    pub fn with_verifier(mut self, verifier: crate::verify::Verifier) -> Self {
        self.verifier = verifier;
        self
    }

    /// Returns the audit trail.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Returns the metrics the app and its server count into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Brings the gauges read from the view up to date and encodes every
    /// metric in Prometheus' text format.
    pub fn scrape(&self) -> String {
        let m = &self.metrics;
        let _scraping = m.scraping.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.projection.position();
        let head = self.log.head().max(applied);
        m.head.set(i64::try_from(applied).unwrap_or(i64::MAX));
        m.lag.set(i64::try_from(head - applied).unwrap_or(i64::MAX));
        {
            // Registries come and go: the family is rebuilt from the view.
            let state = self.projection.read();
            m.credential_expiry.clear();
            for (registry_id, expires) in state.expiring_credentials() {
                let seconds = expires
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                m.credential_expiry
                    .get_or_create(&crate::metrics::RegistryLabels {
                        registry_id: registry_id.to_owned(),
                    })
                    .set(seconds);
            }
        }
        m.encode()
    }

    /// Returns the app bounding each environment by `quotas`.
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// Returns the current time of the app's clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Stops background work so the store can be closed.
    pub async fn close(&self) {
        self.projection.stop().await;
    }

    /// Returns the read model.
    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// Returns the data keys of live credentials.
    pub fn data_keys(&self) -> &DataKeys {
        &self.keys
    }

    /// Returns the log.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// Returns the key-encryption keys in force.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.kek
    }
}

/// Returns a new random id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod execute_tests;
