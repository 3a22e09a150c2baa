//! Test fixtures: a real server on 127.0.0.1 and a free port with a
//! temporary data directory, clients that send a bearer token, and builders
//! for the requests the tests repeat.
#![allow(dead_code, unreachable_pub)]

pub mod moto;
pub mod registry;
pub mod stub;

use std::path::PathBuf;

use registrar::config::ServeConfig;
use registrar::pb;
use registrar::server::Overrides;
use registrar::testing::Running;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// A server with its own data directory, restartable on the same data.
pub struct TestServer {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub admin: String,
    tune: Box<dyn Fn(&mut ServeConfig) + Send + Sync>,
    overrides: Box<dyn Fn() -> Overrides + Send + Sync>,
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// Clients of every service, sharing one connection and one token.
pub struct Clients {
    pub env: pb::environment_service_client::EnvironmentServiceClient<Authed>,
    pub reg: pb::registry_service_client::RegistryServiceClient<Authed>,
    pub settings: pb::settings_service_client::SettingsServiceClient<Authed>,
    pub tokens: pb::token_service_client::TokenServiceClient<Authed>,
    pub pull: pb::pull_service_client::PullServiceClient<Authed>,
    pub keys: pb::key_service_client::KeyServiceClient<Authed>,
    pub history: pb::history_service_client::HistoryServiceClient<Authed>,
}

impl TestServer {
    /// Starts a server on a fresh data directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server whose configuration `tune` adjusts.
    pub async fn start_with(tune: impl Fn(&mut ServeConfig) + Send + Sync + 'static) -> Self {
        Self::start_with_overrides(tune, Overrides::default).await
    }

    /// Starts a server whose configuration `tune` adjusts, with what only
    /// tests change (a clock, the ECR endpoint) from `overrides`, at every
    /// start.
    pub async fn start_with_overrides(
        tune: impl Fn(&mut ServeConfig) + Send + Sync + 'static,
        overrides: impl Fn() -> Overrides + Send + Sync + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = Self {
            running: None,
            dir,
            admin: String::new(),
            tune: Box::new(tune),
            overrides: Box::new(overrides),
        };
        s.boot().await;
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config(&self) -> ServeConfig {
        let mut c = ServeConfig::for_dir(self.data_dir());
        (self.tune)(&mut c);
        c
    }

    async fn boot(&mut self) {
        let running = Running::start(self.config(), (self.overrides)())
            .await
            .expect("server starts");
        if self.admin.is_empty() {
            self.admin = running.admin_token.clone();
            assert!(self.admin.starts_with("rgr."), "admin token written");
        }
        self.running = Some(running);
    }

    /// Stops the server (its store is closed) and starts it again.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.boot().await;
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }

    pub fn url(&self) -> String {
        self.running.as_ref().expect("running").url()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    /// Clients authenticated with `token` (None sends no metadata).
    pub async fn clients_with(&self, token: Option<&str>) -> Clients {
        Clients::over(self.channel().await, Bearer::new(token))
    }

    pub async fn admin(&self) -> Clients {
        self.clients_with(Some(&self.admin.clone())).await
    }
}

impl Bearer {
    /// Sends `token` (None sends no metadata).
    pub fn new(token: Option<&str>) -> Self {
        Bearer(token.map(|t| format!("Bearer {t}").parse().expect("ascii token")))
    }
}

impl Clients {
    /// Clients of every service over one channel.
    pub fn over(ch: Channel, bearer: Bearer) -> Self {
        Clients {
            env: pb::environment_service_client::EnvironmentServiceClient::with_interceptor(
                ch.clone(),
                bearer.clone(),
            ),
            reg: pb::registry_service_client::RegistryServiceClient::with_interceptor(
                ch.clone(),
                bearer.clone(),
            ),
            settings: pb::settings_service_client::SettingsServiceClient::with_interceptor(
                ch.clone(),
                bearer.clone(),
            ),
            tokens: pb::token_service_client::TokenServiceClient::with_interceptor(
                ch.clone(),
                bearer.clone(),
            ),
            keys: pb::key_service_client::KeyServiceClient::with_interceptor(
                ch.clone(),
                bearer.clone(),
            ),
            history: pb::history_service_client::HistoryServiceClient::with_interceptor(
                ch.clone(),
                bearer.clone(),
            ),
            pull: pb::pull_service_client::PullServiceClient::with_interceptor(ch, bearer),
        }
    }
}

/// A fresh server with one environment and its admin's clients: what most
/// tests start from (as kube-rs's controller-rs `fixtures.rs` does), grown
/// with `add_registry` and `agent`.
pub struct Fixture {
    pub server: TestServer,
    pub admin: Clients,
    pub env: String,
}

impl Fixture {
    /// A server with one environment of `orchestration`.
    pub async fn new(orchestration: pb::Orchestration) -> Self {
        Self::with_server(TestServer::start().await, orchestration).await
    }

    /// `server` with one environment of `orchestration`.
    pub async fn with_server(server: TestServer, orchestration: pb::Orchestration) -> Self {
        let mut admin = server.admin().await;
        let env = admin.create_env("fixture", orchestration).await;
        Self { server, admin, env }
    }

    /// Adds a CUSTOM registry at `address` to the environment.
    pub async fn registry(&mut self, address: &str, user: &str, password: &str) -> pb::Registry {
        let request = custom(&self.env, address, user, password);
        self.admin.add_registry(request).await
    }

    /// Clients with a new agent token of the environment.
    pub async fn agent(&mut self) -> Clients {
        let token = self.admin.token(pb::Role::Agent, &self.env).await;
        self.server.clients_with(Some(&token)).await
    }
}

impl TestServer {
    /// Clients with a new agent token of `env`, issued by `admin`.
    pub async fn agent(&self, admin: &mut Clients, env: &str) -> Clients {
        let token = admin.token(pb::Role::Agent, env).await;
        self.clients_with(Some(&token)).await
    }
}

impl Clients {
    /// Creates a registry (or a new credential for its address) and returns
    /// it; panics with the status when refused.
    pub async fn add_registry(&mut self, request: pb::CreateRegistryRequest) -> pb::Registry {
        self.reg
            .create_registry(request)
            .await
            .expect("create registry")
            .into_inner()
            .registry
            .expect("a registry")
    }

    pub async fn create_env(&mut self, name: &str, orchestration: pb::Orchestration) -> String {
        self.env
            .create_environment(pb::CreateEnvironmentRequest {
                name: name.into(),
                orchestration: orchestration as i32,
                request_id: String::new(),
            })
            .await
            .expect("create environment")
            .into_inner()
            .environment
            .expect("environment")
            .id
    }

    pub async fn token(&mut self, role: pb::Role, env: &str) -> String {
        self.tokens
            .create_token(pb::CreateTokenRequest {
                role: role as i32,
                environment_id: env.into(),
                description: "test".into(),
            })
            .await
            .expect("create token")
            .into_inner()
            .token
    }

    pub async fn list(&mut self, env: &str) -> Vec<pb::Registry> {
        self.reg
            .list_registries(pb::ListRegistriesRequest {
                min_revision: 0,
                environment_id: env.into(),
                page_size: 500,
                page_token: String::new(),
            })
            .await
            .expect("list registries")
            .into_inner()
            .registries
    }
}

impl Clients {
    /// Resolves an image in `env` (empty: the token's environment).
    pub async fn resolve(
        &mut self,
        env: &str,
        image: &str,
    ) -> Result<pb::ResolvePullResponse, Status> {
        self.pull
            .resolve_pull(pb::ResolvePullRequest {
                min_revision: 0,
                environment_id: env.into(),
                target: Some(pb::resolve_pull_request::Target::Image(image.into())),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn set_settings(&mut self, default: &str, whitelist: &[&str]) {
        self.settings
            .update_settings(pb::UpdateSettingsRequest {
                settings: Some(pb::Settings {
                    default_registry: default.into(),
                    whitelist: whitelist.iter().map(|s| s.to_string()).collect(),
                }),
                update_mask: None,
                request_id: String::new(),
            })
            .await
            .expect("update settings");
    }
}

/// Returns the allowed answer, or panics with the denial.
pub fn allowed(r: &pb::ResolvePullResponse) -> &pb::PullAllowed {
    match &r.decision {
        Some(pb::resolve_pull_response::Decision::Allowed(a)) => a,
        other => panic!("expected allowed, got {other:?}"),
    }
}

/// Returns the denial reason, or panics when allowed.
pub fn denied(r: &pb::ResolvePullResponse) -> (pb::DenyReason, String) {
    match &r.decision {
        Some(pb::resolve_pull_response::Decision::Denied(d)) => (d.reason(), d.message.clone()),
        other => panic!("expected denied, got {other:?}"),
    }
}

/// A CUSTOM registry request for `address` with a password.
pub fn custom(env: &str, address: &str, user: &str, password: &str) -> pb::CreateRegistryRequest {
    pb::CreateRegistryRequest {
        environment_id: env.into(),
        kind: pb::RegistryKind::Custom as i32,
        address: address.into(),
        email: "ops@example.com".into(),
        username: user.into(),
        password: password.into(),
        ..Default::default()
    }
}

/// Asserts a status code and, for INVALID_ARGUMENT, that the BadRequest
/// detail names `field`.
pub fn assert_status<T: std::fmt::Debug>(
    r: Result<T, Status>,
    code: tonic::Code,
    field: Option<&str>,
) -> Status {
    let status = match r {
        Ok(v) => panic!("expected {code:?}, got Ok({v:?})"),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "{status:?}");
    if let Some(field) = field {
        use tonic_types::StatusExt;
        let details = status.get_error_details();
        let bad = details.bad_request().expect("a BadRequest detail");
        assert!(
            bad.field_violations.iter().any(|v| v.field == field),
            "expected a violation of {field}, got {bad:?}"
        );
        assert!(status.message().contains(field), "{}", status.message());
    }
    status
}

/// A CA bundle of ten large certificate blocks (about 62 KiB), to make
/// messages big.
pub fn big_ca() -> String {
    use base64::Engine as _;
    let mut der = vec![0x30, 0x82, 0x17, 0x00];
    der.extend(std::iter::repeat_n(0x42u8, 4500));
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut one = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        one.push_str(std::str::from_utf8(chunk).unwrap());
        one.push('\n');
    }
    one.push_str("-----END CERTIFICATE-----\n");
    one.repeat(10)
}

/// A free loopback port (bound, then released for the caller to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GETs `path` from a plain HTTP/1.1 listener: (status, headers and body
/// as one text). Bounded: at most 5 s.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// `http_get`, with the failure to connect or read as an error.
pub async fn try_http_get(
    addr: std::net::SocketAddr,
    path: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    let text = tokio::time::timeout(std::time::Duration::from_secs(5), fetch)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 5 s"))??;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    Ok((status, text))
}

/// The value of the sample `name{labels}` (labels exactly as the text
/// format writes them, in order; empty for none) in a Prometheus scrape.
pub fn sample(scrape: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    scrape.lines().find_map(|line| {
        let (k, v) = line.rsplit_once(' ')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

/// Asks `url`'s health service for the server's overall status until it
/// answers (at most `tries` times, 100 ms apart), or `child` exits.
pub async fn wait_for_health(
    url: &str,
    child: &mut std::process::Child,
    tries: usize,
) -> Option<i32> {
    for _ in 0..tries {
        if let Ok(ch) = Channel::from_shared(url.to_owned())
            .unwrap()
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
            if let Ok(r) = health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
            {
                return Some(r.into_inner().status);
            }
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

/// A CA named `ca_name` and a server certificate for `names` (host names
/// or IP addresses) it signed, PEM: (CA, certificate, key).
pub fn test_pki(ca_name: &str, names: &[&str]) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let server =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}
