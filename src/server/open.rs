//! Opening a data directory: the key-encryption keys (never from inside the
//! directory), the store and the app; and the offline minting of an admin
//! token.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bootstrap::{bootstrap_admin, forget_revoked_admin_file, ADMIN_TOKEN_FILE};
use super::Error;
use crate::app::{App, IssuedToken};
use crate::audit::Audit;
use crate::config::ServeConfig;
use crate::crypto::{KeySource, Keyring};
use crate::domain::access::Principal;
use crate::domain::event::Role;
use crate::domain::state::State;
use crate::metrics::Metrics;
use crate::store::postgres::PgStore;
use crate::store::sled::SledStore;

/// The store a server runs on: the embedded sled directory, or the
/// PostgreSQL log that several replicas share.
#[derive(Debug)]
pub(super) enum Store {
    /// `--data-dir` (the default).
    Sled(SledStore),
    /// `--database-url`.
    Postgres(Box<PgStore>),
}

impl Store {
    /// Whether the shared database answers, for the health service; `None`
    /// for the embedded store, which has no such state.
    pub(super) fn reachable(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        match self {
            Store::Sled(_) => None,
            Store::Postgres(store) => Some(store.reachable()),
        }
    }

    /// The elector of the replica that runs background work; `None` for
    /// the embedded store, whose one server always does.
    pub(super) fn elector(&self) -> Option<crate::store::postgres::Elector> {
        match self {
            Store::Sled(_) => None,
            Store::Postgres(store) => Some(store.elector()),
        }
    }

    /// The elector of the replica that checks credentials in the
    /// background; `None` for the embedded store.
    pub(super) fn verify_elector(&self) -> Option<crate::store::postgres::Elector> {
        match self {
            Store::Sled(_) => None,
            Store::Postgres(store) => Some(store.verify_elector()),
        }
    }

    /// Has the store's writer report each group to the app's metrics.
    pub(super) fn observe(&self, metrics: crate::metrics::StoreMetrics) {
        match self {
            Store::Sled(store) => store.observe(metrics),
            Store::Postgres(store) => store.observe(metrics),
        }
    }

    /// Closes the store after the app let go of it.
    pub(super) async fn close(self) -> Result<(), crate::store::Error> {
        match self {
            Store::Sled(store) => store.close().await,
            Store::Postgres(store) => {
                store.close().await;
                Ok(())
            }
        }
    }
}

/// Opens everything `run` serves: data directory or database, key, store,
/// app, admin token.
pub(super) async fn open(
    config: &ServeConfig,
    metrics: Arc<Metrics>,
) -> Result<(App, Store), Error> {
    if config.database_url.is_some() {
        let (app, store) = open_store(config, false, metrics).await?;
        // Replicas share the database: no replica writes a token file; the
        // first admin token is minted with `registrar admin-token
        // --database-url`, once, by whoever runs the installation.
        if !app.projection().read().has_admin_token() && config.admin_token.is_none() {
            tracing::warn!(
                "no admin token: mint one with `registrar admin-token --database-url URL` and the servers' key"
            );
        }
        return Ok((app, store));
    }
    let dir = &config.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::DataDir {
            path: dir.clone(),
            source,
        })?;
    let (app, store) = open_store(config, true, metrics).await?;
    if config.admin_token.is_none() {
        bootstrap_admin(&app, dir).await?;
        tokio::spawn(forget_revoked_admin_file(
            app.clone(),
            dir.join(ADMIN_TOKEN_FILE),
        ));
    }
    Ok((app, store))
}

/// Opens the key, the store and the app of an existing or new data directory.
async fn open_store(
    config: &ServeConfig,
    create_key: bool,
    metrics: Arc<Metrics>,
) -> Result<(App, Store), Error> {
    let dir = &config.data_dir;
    let source = match (&config.key_value, &config.key_file, &config.database_url) {
        (Some(value), _, _) => KeySource::Value(secrecy::SecretString::from(value.0.clone())),
        // Every replica needs the same key: the embedded default of a key
        // file made at first start would give each its own.
        (None, None, Some(_)) => return Err(Error::KeyRequired),
        (None, _, _) => {
            let path = config.key_file_path();
            if config.database_url.is_none() && is_inside(&path, dir) {
                return Err(Error::KeyInsideDataDir(path));
            }
            KeySource::File(path)
        }
    };
    let kek = Keyring::load(&source, create_key && config.database_url.is_none())?;
    let (log, keys, store, view): (
        Arc<dyn crate::store::EventLog>,
        Arc<dyn crate::store::KeyStore>,
        Store,
        State,
    ) = match &config.database_url {
        Some(url) => {
            let store = PgStore::connect(
                url,
                config.database_pool_size,
                config.database_ca.as_deref(),
            )
            .await?;
            let view = State::default();
            (
                store.log(),
                store.keys(),
                Store::Postgres(Box::new(store)),
                view,
            )
        }
        None => {
            // Opening verifies every record: blocking work, off the async
            // workers. The view is folded in the same pass over the log.
            let dir = dir.clone();
            let cache_bytes = config.sled_cache_mib.saturating_mul(1024 * 1024);
            let (store, view) = tokio::task::spawn_blocking(move || {
                let mut view = State::default();
                let store = SledStore::open_folding(&dir, cache_bytes, &mut |record| {
                    view.apply(&crate::store::payload::decode(record)?);
                    Ok(())
                })?;
                Ok::<_, crate::store::Error>((store, view))
            })
            .await
            .map_err(|e| {
                crate::store::Error::storage(format!("opening the store failed: {e}"))
            })??;
            (store.log(), store.keys(), Store::Sled(store), view)
        }
    };
    // Every commit counts, the first admin token's too.
    store.observe(metrics.store());
    let app = App::open_from(log, keys, kek, config.admin_token.as_deref(), view).await?;
    let audit = match &config.audit_log {
        Some(path) => Audit::open(
            path,
            Arc::clone(app.keyring()),
            metrics.audit_failures.clone(),
        )?,
        None => Audit::disabled(),
    };
    let app = app
        .with_metrics(metrics)
        .with_audit(Arc::new(audit))
        .with_quotas(crate::domain::quota::Quotas {
            registries_per_environment: config.max_registries_per_environment,
            ca_bytes_per_environment: config.max_ca_bytes_per_environment,
        });
    Ok((app, store))
}

/// Mints a new admin token and returns it: in a stopped server's data
/// directory (its lock refuses a running server), or in the database that
/// replicas share (while they run): the first admin token of a database,
/// or the way back in when every admin token was revoked or lost.
pub async fn mint_admin_token(config: &ServeConfig) -> Result<secrecy::SecretString, Error> {
    if config.database_url.is_none() && !config.data_dir.is_dir() {
        return Err(Error::DataDir {
            path: config.data_dir.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no data directory here; give the server's --data-dir",
            ),
        });
    }
    let (app, store) = open_store(config, false, Arc::new(Metrics::new())).await?;
    let token = IssuedToken::generate();
    let issued = app
        .issue_token(
            &Principal::system(),
            Some(Role::Admin),
            String::new(),
            "recovery admin (registrar admin-token)".to_owned(),
            &token,
        )
        .await;
    app.close().await;
    drop(app);
    store.close().await?;
    issued?;
    tracing::info!(token_id = %token.token_id, "minted a recovery admin token");
    Ok(token.token)
}

/// Returns the audit log's HMAC of `username` under the configured key
/// (never created here): what `registrar audit-hmac` prints.
pub fn audit_hmac(config: &ServeConfig, username: &str) -> Result<String, Error> {
    let source = match &config.key_value {
        Some(value) => KeySource::Value(secrecy::SecretString::from(value.0.clone())),
        None => KeySource::File(config.key_file_path()),
    };
    let kek = Keyring::load(&source, false)?;
    let audit = Audit::with_keys(Arc::new(kek));
    Ok(audit.username_hmac(username).unwrap_or_default())
}

/// Returns whether `path` lies inside `dir` once both are resolved:
/// symbolic links followed and `..` taken, so `/srv/x/../data/kek` is
/// inside `/srv/data` and a link into the directory is too.
fn is_inside(path: &Path, dir: &Path) -> bool {
    resolved(path).starts_with(resolved(dir))
}

/// Resolves a path that may not exist yet: the longest existing prefix is
/// canonicalized by the file system, and the missing rest appended (a `..`
/// in it takes one component off).
fn resolved(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let components: Vec<Component<'_>> = absolute.components().collect();
    for split in (1..=components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        let Ok(mut out) = prefix.canonicalize() else {
            continue;
        };
        for c in &components[split..] {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => out.push(name),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        return out;
    }
    absolute
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_reached_through_dot_dot_or_a_link_is_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("srv/data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(tmp.path().join("srv/x")).unwrap();
        // `..` through a directory that exists, and one that does not.
        assert!(is_inside(&tmp.path().join("srv/x/../data/kek"), &data));
        assert!(is_inside(
            &tmp.path().join("srv/missing/../data/kek"),
            &data
        ));
        // The data directory itself named through `..`.
        assert!(is_inside(
            &data.join("kek"),
            &tmp.path().join("srv/x/../data")
        ));
        // A link that points into the data directory.
        std::os::unix::fs::symlink(&data, tmp.path().join("link")).unwrap();
        assert!(is_inside(&tmp.path().join("link/kek"), &data));
        // Beside it is not inside, however it is named.
        assert!(!is_inside(&tmp.path().join("srv/data.key"), &data));
        assert!(!is_inside(&tmp.path().join("srv/x/../kek"), &data));
    }
}
