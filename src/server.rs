//! `run`: open the store, replay, bootstrap the admin token, and serve the
//! API with health and reflection until shutdown. Production and tests both
//! call it.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::api::{Api, WatchSettings, FILE_DESCRIPTOR_SET};
use crate::app::{App, IssuedToken};
use crate::config::ServeConfig;
use crate::crypto::{KeySource, Keyring};
use crate::domain::access::Principal;
use crate::domain::event::{Role, Stream};
use crate::ecr::{HttpTokenSource, RefresherSettings};
use crate::pb;
use crate::store::sled::SledStore;

/// Name of the bootstrap admin token file inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}", path = path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file is inside the data directory.
    #[error("the key file {0} must not be inside the data directory: a copy of the directory must not carry its key")]
    KeyInsideDataDir(PathBuf),
    /// The key-encryption key could not be loaded.
    #[error(transparent)]
    Key(#[from] crate::crypto::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The app could not start.
    #[error(transparent)]
    App(#[from] crate::app::Error),
    /// The admin token file could not be written.
    #[error("admin token file {path}: {source}", path = path.display())]
    AdminToken {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("TLS file {path}: {source}", path = path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The client CA file holds no certificate.
    #[error("--tls-client-ca {path}: no PEM CERTIFICATE block; give the CA that signs the agents' client certificates", path = path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
    },
    /// Plaintext on a non-loopback address was not allowed.
    #[error("refusing to serve plaintext gRPC on {0}, which is not a loopback address: give --tls-cert and --tls-key, or --allow-plaintext if a TLS proxy is in front")]
    Plaintext(SocketAddr),
    /// The transport failed.
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Opens everything `run` serves: data directory, key, store, app, admin token.
pub async fn open(config: &ServeConfig) -> Result<(App, SledStore), Error> {
    let dir = &config.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::DataDir {
            path: dir.clone(),
            source,
        })?;
    let (app, store) = open_store(config, true).await?;
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
async fn open_store(config: &ServeConfig, create_key: bool) -> Result<(App, SledStore), Error> {
    let dir = &config.data_dir;
    let source = match &config.key_value {
        Some(value) => KeySource::Value(secrecy::SecretString::from(value.clone())),
        None => {
            let path = config.key_file_path();
            if is_inside(&path, dir) {
                return Err(Error::KeyInsideDataDir(path));
            }
            KeySource::File(path)
        }
    };
    let kek = Keyring::load(&source, create_key)?;
    let store = SledStore::open(dir)?;
    let mut app = App::open(
        store.log() as Arc<dyn crate::store::EventLog>,
        store.keys() as Arc<dyn crate::store::KeyStore>,
        kek,
        config.admin_token.as_deref(),
    )
    .await?;
    if let Some(clock) = &config.clock {
        app = app.with_clock(Arc::clone(clock));
    }
    let app = app.with_quotas(crate::domain::quota::Quotas {
        registries_per_environment: config.max_registries_per_environment,
        ca_bytes_per_environment: config.max_ca_bytes_per_environment,
    });
    Ok((app, store))
}

/// Mints a new admin token in a stopped server's data directory and returns
/// it: the way back in when every admin token was revoked or lost. The
/// directory's lock refuses a server that is still running.
pub async fn mint_admin_token(config: &ServeConfig) -> Result<secrecy::SecretString, Error> {
    if !config.data_dir.is_dir() {
        return Err(Error::DataDir {
            path: config.data_dir.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no data directory here; give the server's --data-dir",
            ),
        });
    }
    let (app, store) = open_store(config, false).await?;
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

/// Serves until `shutdown` completes, then closes the store.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let local = listener.local_addr().ok();
    let limits = transport(
        &config,
        local.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
    )?;
    let (app, store) = open(&config).await?;
    let result = serve(
        app,
        watch_settings(&config),
        ecr_settings(&config),
        limits,
        listener,
        shutdown,
    )
    .await;
    if let Err(e) = store.close().await {
        tracing::error!(error = %e, "closing the store failed");
    }
    tracing::info!(address = ?local, "stopped");
    result
}

/// Returns the watch stream settings of a configuration.
pub fn watch_settings(config: &ServeConfig) -> WatchSettings {
    WatchSettings {
        buffer: config.watch_buffer.max(1),
        stall_timeout: Duration::from_millis(config.watch_stall_ms),
        bookmark_every: Duration::from_millis(config.watch_bookmark_ms.max(1)),
        max_per_token: config.max_watches_per_token.max(1),
    }
}

/// What one client may ask of the server: sizes, concurrency, time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest RegistryService request, in bytes.
    pub max_request_bytes: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Calls in progress per connection; more are shed.
    pub max_calls_per_connection: usize,
    /// Time a call may take to answer.
    pub request_timeout: Duration,
    /// Interval of HTTP/2 pings.
    pub keepalive_interval: Duration,
    /// Time to wait for a ping's answer before dropping the peer.
    pub keepalive_timeout: Duration,
    /// The TLS settings to serve with (identity, client CA); `None` serves
    /// plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

/// Largest request of the services other than RegistryService: their
/// messages hold ids, names, images and the whitelist.
pub const SMALL_REQUEST_BYTES: usize = 64 * 1024;

/// Returns the limits of a configuration.
pub fn limits(config: &ServeConfig) -> Limits {
    Limits {
        max_request_bytes: config.max_request_bytes.max(1024),
        max_concurrent_streams: config.max_concurrent_streams.max(1),
        max_calls_per_connection: config.max_calls_per_connection.max(1),
        request_timeout: Duration::from_millis(config.request_timeout_ms.max(1)),
        keepalive_interval: Duration::from_secs(config.keepalive_secs.max(1)),
        keepalive_timeout: Duration::from_secs(config.keepalive_timeout_secs.max(1)),
        tls: None,
    }
}

/// Returns the transport settings of a configuration: its limits and its
/// TLS settings. A non-loopback address without TLS is refused unless
/// plaintext is allowed explicitly.
pub fn transport(config: &ServeConfig, listen: SocketAddr) -> Result<Limits, Error> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| Error::Tls {
            path: path.clone(),
            source,
        })
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
            let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
            if let Some(path) = &config.tls_client_ca {
                let pem = read(path)?;
                if !pem
                    .windows(CERTIFICATE_PEM.len())
                    .any(|w| w == CERTIFICATE_PEM)
                {
                    return Err(Error::ClientCa { path: path.clone() });
                }
                tls = tls
                    .client_ca_root(tonic::transport::Certificate::from_pem(pem))
                    .client_auth_optional(!config.tls_require_client_cert);
            }
            Some(tls)
        }
        _ => None,
    };
    if tls.is_none() && !listen.ip().is_loopback() && !config.allow_plaintext {
        return Err(Error::Plaintext(listen));
    }
    Ok(Limits {
        tls,
        ..limits(config)
    })
}

/// The first line of a PEM certificate.
const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// Returns the ECR refresher settings of a configuration.
pub fn ecr_settings(config: &ServeConfig) -> RefresherSettings {
    RefresherSettings {
        endpoint_override: config.ecr_endpoint.clone(),
        poll: Duration::from_millis(config.ecr_poll_ms.max(10)),
        ..RefresherSettings::default()
    }
}

/// Serves the API over an opened app, with the ECR refresher. When
/// `shutdown` completes, watch streams end with UNAVAILABLE first, so the
/// graceful shutdown is prompt.
pub async fn serve(
    app: App,
    watch: WatchSettings,
    ecr: RefresherSettings,
    limits: Limits,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let refresher = match HttpTokenSource::new() {
        Ok(source) => Some(crate::ecr::spawn(app.clone(), Arc::new(source), ecr)),
        Err(e) => {
            tracing::error!(error = %e, "ECR tokens will not be refreshed");
            None
        }
    };
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = closing_tx.send(true);
    };
    let api = Api::new(app.clone(), watch, closing);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::environment_service_server::EnvironmentServiceServer<Api>>()
        .await;
    health
        .set_serving::<pb::registry_service_server::RegistryServiceServer<Api>>()
        .await;
    health
        .set_serving::<pb::settings_service_server::SettingsServiceServer<Api>>()
        .await;
    health
        .set_serving::<pb::token_service_server::TokenServiceServer<Api>>()
        .await;
    health
        .set_serving::<pb::pull_service_server::PullServiceServer<Api>>()
        .await;
    health
        .set_serving::<pb::key_service_server::KeyServiceServer<Api>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(|e| Error::DataDir {
        path: PathBuf::from("reflection"),
        source: std::io::Error::other(e.to_string()),
    })?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| Error::DataDir {
        path: PathBuf::from("reflection"),
        source: std::io::Error::other(e.to_string()),
    })?;
    tracing::info!(address = ?listener.local_addr().ok(), "serving");
    let small = SMALL_REQUEST_BYTES.min(limits.max_request_bytes);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = limits.tls.clone() {
        builder = builder.tls_config(tls)?;
    }
    let served = builder
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted,
        ))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .concurrency_limit_per_connection(limits.max_calls_per_connection)
        .load_shed(true)
        .timeout(limits.request_timeout)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .add_service(health_service.max_decoding_message_size(small))
        .add_service(reflection_v1.max_decoding_message_size(small))
        .add_service(reflection_v1alpha.max_decoding_message_size(small))
        .add_service(api.environment_service().max_decoding_message_size(small))
        .add_service(
            api.registry_service()
                .max_decoding_message_size(limits.max_request_bytes),
        )
        .add_service(api.settings_service().max_decoding_message_size(small))
        .add_service(api.token_service().max_decoding_message_size(small))
        .add_service(api.pull_service().max_decoding_message_size(small))
        .add_service(api.key_service().max_decoding_message_size(small))
        .serve_with_incoming_shutdown(incoming(listener, &limits), shutdown)
        .await;
    if let Some(refresher) = refresher {
        refresher.abort();
        // A cancelled task's error is the expected outcome here.
        let _ = refresher.await;
    }
    app.close().await;
    served?;
    Ok(())
}

/// Answers a request larger than the service decodes with
/// RESOURCE_EXHAUSTED, as gRPC's status code table says, instead of the
/// OUT_OF_RANGE tonic's decoder gives. registrar itself never answers
/// OUT_OF_RANGE, so every such status is the decoder's. Its message (the
/// size and the limit) is kept.
fn oversize_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    const OUT_OF_RANGE: &str = "11";
    const RESOURCE_EXHAUSTED: http::HeaderValue = http::HeaderValue::from_static("8");
    if response
        .headers()
        .get("grpc-status")
        .is_some_and(|v| v == OUT_OF_RANGE)
    {
        response
            .headers_mut()
            .insert("grpc-status", RESOURCE_EXHAUSTED);
    }
    response
}

/// Accepts connections with TCP_NODELAY: small answers would otherwise wait
/// for the peer's delayed ACK (about 40 ms per call).
/// TCP keepalive finds peers that vanished without a word (the HTTP/2 pings
/// need a live connection to be sent on).
fn incoming(listener: TcpListener, limits: &Limits) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(limits.keepalive_interval))
}

/// Writes and records the first admin token of a new log, once: only while
/// no token was ever recorded. The file is written before the token is
/// recorded, so a crash between the two leaves a file that the next start
/// records, never a lost admin. A revoked bootstrap token never returns;
/// `registrar admin-token` mints a new admin token offline.
async fn bootstrap_admin(app: &App, dir: &Path) -> Result<(), Error> {
    let path = dir.join(ADMIN_TOKEN_FILE);
    let (tokens_ever, admin_live) = {
        let state = app.projection().read();
        (
            state.stream_version(&Stream::Tokens.name()) > 0,
            state.has_admin_token(),
        )
    };
    if tokens_ever {
        remove_revoked_admin_file(app, &path);
        if !admin_live {
            tracing::warn!(
                "no admin token is live; mint one with `registrar admin-token` while the server is stopped"
            );
        }
        return Ok(());
    }
    let existing = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| IssuedToken::parse(t.trim()));
    let token = match existing {
        Some(token) => token,
        None => {
            let token = IssuedToken::generate();
            write_private(&path, token.token.expose_secret().as_bytes()).map_err(|source| {
                Error::AdminToken {
                    path: path.clone(),
                    source,
                }
            })?;
            token
        }
    };
    app.issue_token(
        &Principal::system(),
        Some(Role::Admin),
        String::new(),
        "bootstrap admin".to_owned(),
        &token,
    )
    .await?;
    tracing::info!(path = %path.display(), "wrote the admin token");
    Ok(())
}

/// Removes the bootstrap admin token file once its token is revoked, so no
/// dead secret stays on disk.
fn remove_revoked_admin_file(app: &App, path: &Path) {
    let Some(token) = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| IssuedToken::parse(t.trim()))
    else {
        return;
    };
    if app.projection().read().token(&token.token_id).is_some() {
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed the revoked admin token's file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the revoked admin token's file")
        }
    }
}

/// Follows the projection and removes the admin token file when its token
/// is revoked while the server runs; ends with the projection.
async fn forget_revoked_admin_file(app: App, path: PathBuf) {
    let mut applied = app.projection().watch_applied();
    while applied.changed().await.is_ok() {
        if !path.exists() {
            return;
        }
        remove_revoked_admin_file(&app, &path);
    }
}

/// Writes a file readable by its owner only, atomically (temp + rename + fsync).
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
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

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// A server running in this process, for tests and benchmarks.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bootstrap admin token.
    pub admin_token: String,
    /// Its configuration.
    pub config: ServeConfig,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), Error>>>,
}

impl Running {
    /// Starts a server for `config` on 127.0.0.1 and a free port.
    pub async fn start(config: ServeConfig) -> Result<Self, Error> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|source| Error::DataDir {
                path: PathBuf::from("listener"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::DataDir {
            path: PathBuf::from("listener"),
            source,
        })?;
        let (app, store) = open(&config).await?;
        let admin_token = std::fs::read_to_string(config.data_dir.join(ADMIN_TOKEN_FILE))
            .map(|t| t.trim().to_owned())
            .or_else(|_| config.admin_token.clone().ok_or(()))
            .unwrap_or_default();
        let settings = watch_settings(&config);
        let ecr = ecr_settings(&config);
        let limits = transport(&config, addr)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let store = Arc::new(tokio::sync::Mutex::new(Some(store)));
        let task = tokio::spawn(async move {
            let r = serve(app, settings, ecr, limits, listener, async {
                let _ = stopped.await;
            })
            .await;
            if let Some(s) = store.lock().await.take() {
                s.close().await?;
            }
            r
        });
        Ok(Self {
            addr,
            admin_token,
            config,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Returns the URL clients connect to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until its store is closed.
    pub async fn stop(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            // A panic in the server is no clean stop: it reaches the caller.
            Some(task) => match task.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Ok(()),
            },
            None => Ok(()),
        }
    }
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
