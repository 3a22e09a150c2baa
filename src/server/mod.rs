//! Starting the server: `run` opens the data directory, the key and the
//! store, bootstraps the admin token, and serves the API with health and
//! reflection until shutdown. It is the only way to start: `main` and the
//! test harness both call it. Opening is in `open.rs`, the admin token in
//! `bootstrap.rs`, configuration-to-settings in `settings.rs`, TLS and the
//! transport's limits in `tls.rs`.

mod admission_http;
mod bootstrap;
mod conn;
mod grpc_metrics;
mod http1;
mod metrics_http;
mod open;
mod settings;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use conn::Conn;

use crate::api::{Api, WatchSettings, FILE_DESCRIPTOR_SET};
use crate::app::{App, Clock};
use crate::config::ServeConfig;
use crate::ecr::{HttpTokenSource, RefresherSettings};
use crate::pb;

pub use bootstrap::ADMIN_TOKEN_FILE;
pub use open::{audit_hmac, mint_admin_token};
pub use settings::{
    ecr_settings, limits, verify_limits, verify_schedule, watch_settings, Limits,
    SMALL_REQUEST_BYTES,
};
pub use tls::transport;

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
    /// The shared database needs a key every replica shares.
    #[error("with --database-url the key-encryption key must be given (--key-file or REGISTRAR_KEY), the same for every replica; none is created")]
    KeyRequired,
    /// Plaintext on a non-loopback address was not allowed.
    #[error("refusing to serve plaintext gRPC on {0}, which is not a loopback address: give --tls-cert and --tls-key, or --allow-plaintext if a TLS proxy is in front")]
    Plaintext(SocketAddr),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::OpenError),
    /// The admission listener lacks its certificate or key.
    #[error("--admission-listen needs --admission-tls-cert and --admission-tls-key: the API server calls webhooks over HTTPS only")]
    AdmissionTls,
    /// The admission listener could not be bound.
    #[error("--admission-listen {address}: {source}")]
    AdmissionListen {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The metrics listener could not be bound.
    #[error("--metrics-listen {address}: {source}")]
    MetricsListen {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The transport failed.
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What tests and benchmarks change of a running server that no user may:
/// deliberately not configuration, so no flag or variable reaches them.
#[derive(Default)]
pub struct Overrides {
    /// The clock the server decides with (the system clock otherwise).
    pub clock: Option<Arc<dyn Clock>>,
    /// The ECR API URL instead of the one derived from each registry address.
    pub ecr_endpoint: Option<String>,
    /// Told once the server serves: store open, admin token written.
    pub ready: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("clock", &self.clock.is_some())
            .field("ecr_endpoint", &self.ecr_endpoint)
            .field("ready", &self.ready.is_some())
            .finish()
    }
}

/// Serves until `shutdown` completes, then closes the store.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    overrides: Overrides,
) -> Result<(), Error> {
    let local = listener.local_addr().ok();
    let limits = transport(
        &config,
        local.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
    )?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .map_err(|source| Error::MetricsListen { address, source })?,
        ),
        None => None,
    };
    let admission = match (
        config.admission_listen,
        &config.admission_tls_cert,
        &config.admission_tls_key,
    ) {
        (None, _, _) => None,
        (Some(address), Some(cert), Some(key)) => {
            let tls = admission_http::tls(cert, key)?;
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| Error::AdmissionListen { address, source })?;
            Some((listener, tls))
        }
        (Some(_), _, _) => return Err(Error::AdmissionTls),
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (mut app, store) = open::open(&config, metrics).await?;
    if let Some(clock) = overrides.clock {
        app = app.with_clock(clock);
    }
    app = app.with_verifier(crate::verify::Verifier::new(verify_limits(&config)));
    let ecr = RefresherSettings {
        endpoint_override: overrides.ecr_endpoint,
        ..ecr_settings(&config)
    };
    if let Some(ready) = overrides.ready {
        let _ = ready.send(());
    }
    let result = serve(
        app,
        Served {
            watch: watch_settings(&config),
            ecr,
            limits,
            reachable: store.reachable(),
            elector: store.elector(),
            verify: verify_schedule(&config),
            verify_elector: store.verify_elector(),
            metrics_listener,
            admission,
        },
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

/// Serves the API over an opened app, with the ECR refresher. When
/// `shutdown` completes, watch streams end with UNAVAILABLE first, so the
/// graceful shutdown is prompt.
/// What `serve` runs with besides the app.
struct Served {
    watch: WatchSettings,
    ecr: RefresherSettings,
    limits: Limits,
    /// Whether the shared database answers (PostgreSQL only).
    reachable: Option<tokio::sync::watch::Receiver<bool>>,
    /// Who runs background work among replicas (PostgreSQL only).
    elector: Option<crate::store::postgres::Elector>,
    /// The background credential check.
    verify: crate::verify::ScheduleSettings,
    /// Who runs it among replicas (PostgreSQL only).
    verify_elector: Option<crate::store::postgres::Elector>,
    /// Where `/metrics` is served, if anywhere.
    metrics_listener: Option<TcpListener>,
    /// Where the admission webhooks are served, with their TLS.
    admission: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
}

async fn serve(
    app: App,
    served: Served,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let Served {
        watch,
        ecr,
        limits,
        reachable,
        elector,
        verify,
        verify_elector,
        metrics_listener,
        admission,
    } = served;
    let verifier = crate::verify::spawn(app.clone(), verify, verify_elector);
    let admission_task = admission.map(|(listener, tls)| {
        tracing::info!(address = ?listener.local_addr().ok(), "serving admission webhooks");
        tokio::spawn(admission_http::serve(listener, tls, app.clone()))
    });
    let metrics_task = metrics_listener.map(|listener| {
        tracing::info!(address = ?listener.local_addr().ok(), "serving metrics at /metrics");
        tokio::spawn(metrics_http::serve(listener, app.clone()))
    });
    let refresher = match HttpTokenSource::new() {
        Ok(source) => Some(crate::ecr::spawn(
            app.clone(),
            Arc::new(source),
            ecr,
            elector,
        )),
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
        .set_serving::<crate::pb_served::pull_service_server::PullServiceServer<Api>>()
        .await;
    health
        .set_serving::<pb::history_service_server::HistoryServiceServer<Api>>()
        .await;
    set_writers_health(&health, true).await;
    let health_task = reachable.map(|mut reachable| {
        let health = health.clone();
        tokio::spawn(async move {
            loop {
                let up = *reachable.borrow_and_update();
                set_writers_health(&health, up).await;
                if reachable.changed().await.is_err() {
                    return;
                }
            }
        })
    });
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
    let grpc_metrics = grpc_metrics::GrpcMetricsLayer::new(
        app.metrics(),
        &[
            FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ],
    );
    let served = builder
        // Every log line written while a call is handled carries its method.
        .trace_fn(|request| tracing::info_span!("grpc", method = %request.uri().path()))
        .layer(grpc_metrics)
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
        .add_service(api.history_service().max_decoding_message_size(small))
        .serve_with_incoming_shutdown(incoming(listener, &limits), shutdown)
        .await;
    if let Some(task) = health_task {
        task.abort();
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    if let Some(task) = admission_task {
        task.abort();
    }
    if let Some(task) = verifier {
        task.abort();
        let _ = task.await;
    }
    if let Some(refresher) = refresher {
        refresher.abort();
        // A cancelled task's error is the expected outcome here.
        let _ = refresher.await;
    }
    app.close().await;
    served?;
    Ok(())
}

/// Reports the services that take writes SERVING or NOT_SERVING: with the
/// shared database unreachable they can answer reads but no write, while
/// PullService (reads only, from the replica's own view) stays SERVING.
async fn set_writers_health(health: &tonic_health::server::HealthReporter, up: bool) {
    use tonic_health::ServingStatus;
    let status = if up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in [
        <pb::environment_service_server::EnvironmentServiceServer<Api> as tonic::server::NamedService>::NAME,
        <pb::registry_service_server::RegistryServiceServer<Api> as tonic::server::NamedService>::NAME,
        <pb::settings_service_server::SettingsServiceServer<Api> as tonic::server::NamedService>::NAME,
        <pb::token_service_server::TokenServiceServer<Api> as tonic::server::NamedService>::NAME,
        <pb::key_service_server::KeyServiceServer<Api> as tonic::server::NamedService>::NAME,
    ] {
        health.set_service_status(name, status).await;
    }
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
/// need a live connection to be sent on). Each connection is a [`Conn`],
/// so that an answer and its trailers leave in one write.
fn incoming(
    listener: TcpListener,
    limits: &Limits,
) -> impl tokio_stream::Stream<Item = std::io::Result<Conn>> {
    use tokio_stream::StreamExt as _;
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(limits.keepalive_interval))
        .map(|accepted| accepted.map(Conn::new))
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
