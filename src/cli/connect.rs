//! Connecting to the server: the URL, the bearer token (flag, file, or the
//! server's own `admin.token` on its machine) and the generated clients.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::{Error, Result};
use crate::cli::args::ConnectionArgs;
use crate::pb;
use crate::server::ADMIN_TOKEN_FILE;

/// How long to wait for the TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The data directory `registrar serve` uses by default.
const DEFAULT_DATA_DIR: &str = "./registrar-data";

/// Whether a command may fall back on the server's own `admin.token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// People's commands on the server's machine: read `admin.token`.
    AdminTokenFile,
    /// Agents (credential helper, kubelet plugin): only the given token.
    GivenOnly,
}

/// Returns the URL to dial: `http://` is added when no scheme is given.
///
/// # Errors
/// A scheme other than `http` or `https` is a usage error.
pub fn server_url(server: &str) -> Result<String> {
    let server = server.trim().trim_end_matches('/');
    if server.is_empty() {
        return Err(Error::Usage(
            "--server (REGISTRAR_SERVER) is empty: give a URL such as http://127.0.0.1:50051"
                .to_owned(),
        ));
    }
    match server.split_once("://") {
        None => Ok(format!("http://{server}")),
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(server.to_owned()),
        Some((scheme, _)) => Err(Error::Usage(format!(
            "--server (REGISTRAR_SERVER) must be an http:// or https:// URL, not {scheme}://"
        ))),
    }
}

/// Where the token came from, for error hints (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or `REGISTRAR_TOKEN`.
    Given,
    /// `--token-file` or `REGISTRAR_TOKEN_FILE`.
    File(PathBuf),
    /// The server's `admin.token` found on this machine.
    AdminFile(PathBuf),
    /// No token at all.
    None,
}

/// Finds the bearer token: the flag or variable, then the token file, then
/// (for people's commands) `$REGISTRAR_DATA_DIR/admin.token` or
/// `./registrar-data/admin.token` when readable.
///
/// # Errors
/// A token file that was named but cannot be read, or is empty.
pub fn find_token(
    args: &ConnectionArgs,
    discovery: Discovery,
) -> Result<(Option<String>, TokenSource)> {
    if let Some(token) = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Ok((Some(token.to_owned()), TokenSource::Given));
    }
    if let Some(path) = &args.token_file {
        let token = read_token_file(path)?
            .ok_or_else(|| Error::Usage(format!("the token file {} is empty", path.display())))?;
        return Ok((Some(token), TokenSource::File(path.clone())));
    }
    if discovery == Discovery::AdminTokenFile {
        let dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let path = dir.join(ADMIN_TOKEN_FILE);
        if let Ok(Some(token)) = read_token_file(&path) {
            return Ok((Some(token), TokenSource::AdminFile(path)));
        }
    }
    Ok((None, TokenSource::None))
}

fn read_token_file(path: &Path) -> Result<Option<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        context: format!("reading the token file {}", path.display()),
        source,
    })?;
    let token = text.trim();
    Ok((!token.is_empty()).then(|| token.to_owned()))
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer([redacted])"
        } else {
            "Bearer(none)"
        })
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel with its token: hands out the generated clients.
type Authed = InterceptedService<Channel, Bearer>;

/// A connection to the server with the caller's token.
#[derive(Debug, Clone)]
pub struct Connection {
    channel: Channel,
    bearer: Bearer,
    /// The URL dialled.
    pub server: String,
    /// Where the token came from.
    pub token_source: TokenSource,
    /// Whether a client certificate is presented.
    client_cert: bool,
}

impl Connection {
    /// Connects to the server named by `args` with the token it finds.
    ///
    /// # Errors
    /// A bad URL or token is a usage error; a server that cannot be reached
    /// is [`Error::Connect`].
    pub async fn open(args: &ConnectionArgs, discovery: Discovery) -> Result<Self> {
        let server = server_url(&args.server)?;
        let (token, token_source) = find_token(args, discovery)?;
        let bearer = match token {
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                Error::Usage("the token is not printable ASCII; check how it was copied".to_owned())
            })?),
            None => None,
        };
        let endpoint = endpoint(&server, args)?;
        let channel = endpoint.connect().await.map_err(|e| Error::Connect {
            server: server.clone(),
            cause: crate::telemetry::error_chain(&e),
        })?;
        Ok(Self {
            channel,
            bearer: Bearer(bearer),
            server,
            token_source,
            client_cert: args.client_cert.is_some(),
        })
    }

    /// Returns the environment service's client.
    pub fn environments(&self) -> pb::environment_service_client::EnvironmentServiceClient<Authed> {
        pb::environment_service_client::EnvironmentServiceClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// Returns the registry service's client.
    pub fn registries(&self) -> pb::registry_service_client::RegistryServiceClient<Authed> {
        pb::registry_service_client::RegistryServiceClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// Returns the settings service's client.
    pub fn settings(&self) -> pb::settings_service_client::SettingsServiceClient<Authed> {
        pb::settings_service_client::SettingsServiceClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// Returns the token service's client.
    pub fn keys(&self) -> pb::key_service_client::KeyServiceClient<Authed> {
        pb::key_service_client::KeyServiceClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    pub fn tokens(&self) -> pb::token_service_client::TokenServiceClient<Authed> {
        pb::token_service_client::TokenServiceClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// Returns the history service's client.
    pub fn history(&self) -> pb::history_service_client::HistoryServiceClient<Authed> {
        pb::history_service_client::HistoryServiceClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// Returns the pull service's client.
    pub fn pulls(&self) -> pb::pull_service_client::PullServiceClient<Authed> {
        pb::pull_service_client::PullServiceClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// Awaits a call and returns its answer, or the CLI's error for its
    /// status: every command's call goes through here.
    pub async fn answer<T>(
        &self,
        call: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, Status>>,
    ) -> Result<T> {
        call.await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.status(s))
    }

    /// Turns a status into the CLI's error, with a hint when no token was sent.
    pub fn status(&self, status: Status) -> Error {
        let mut error = Error::from_status(&self.server, status);
        if let Error::Status { code, hint, .. } = &mut error {
            if *code == tonic::Code::Unauthenticated {
                *hint = Some(match &self.token_source {
                    TokenSource::None if self.client_cert => "the client certificate was refused, and no token was given: pass --token, or set REGISTRAR_TOKEN or REGISTRAR_TOKEN_FILE".to_owned(),
                    TokenSource::None => "no token was given: pass --token, or set REGISTRAR_TOKEN or REGISTRAR_TOKEN_FILE".to_owned(),
                    TokenSource::Given => "the token given by --token or REGISTRAR_TOKEN was refused".to_owned(),
                    TokenSource::File(p) => format!("the token in {} was refused", p.display()),
                    TokenSource::AdminFile(p) => format!("the admin token in {} was refused (is it this server's?)", p.display()),
                });
            }
        }
        error
    }
}

fn endpoint(server: &str, args: &ConnectionArgs) -> Result<Endpoint> {
    let endpoint = Endpoint::from_shared(server.to_owned())
        .map_err(|e| Error::Usage(format!("--server {server} is not a valid URL: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if args.client_cert.is_some() != args.client_key.is_some() {
        return Err(Error::Usage(
            "--client-cert (REGISTRAR_CLIENT_CERT) and --client-key (REGISTRAR_CLIENT_KEY) go together: give both or neither".to_owned(),
        ));
    }
    if server.starts_with("https://") {
        return tls(endpoint, server, args);
    }
    if args.client_cert.is_some() || args.server_ca.is_some() {
        return Err(Error::Usage(format!(
            "--client-cert and --server-ca are for TLS, and {server} is plain http: use https://"
        )));
    }
    Ok(endpoint)
}

fn tls(endpoint: Endpoint, server: &str, args: &ConnectionArgs) -> Result<Endpoint> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |flag: &str, path: &Path| {
        std::fs::read(path).map_err(|source| Error::Io {
            context: format!("reading {flag} {}", path.display()),
            source,
        })
    };
    let mut config = match &args.server_ca {
        Some(path) => {
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--server-ca", path)?))
        }
        None => ClientTlsConfig::new().with_enabled_roots(),
    };
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        config = config.identity(Identity::from_pem(
            read("--client-cert", cert)?,
            read("--client-key", key)?,
        ));
    }
    endpoint.tls_config(config).map_err(|e| {
        Error::Usage(format!(
            "TLS for {server}: {}",
            crate::telemetry::error_chain(&e)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(token: Option<&str>, file: Option<PathBuf>, dir: Option<PathBuf>) -> ConnectionArgs {
        ConnectionArgs {
            server: crate::cli::args::DEFAULT_SERVER.to_owned(),
            token: token.map(str::to_owned),
            token_file: file,
            data_dir: dir,
            server_ca: None,
            client_cert: None,
            client_key: None,
        }
    }

    #[test]
    fn a_server_without_a_scheme_is_dialled_over_plain_http() {
        assert_eq!(
            server_url("127.0.0.1:50051").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(server_url(" http://h:1/ ").unwrap(), "http://h:1");
        assert_eq!(server_url("https://h").unwrap(), "https://h");
    }

    #[test]
    fn an_https_server_gets_a_tls_endpoint() {
        let a = args(None, None, None);
        let e = endpoint("https://registrar.example.com:443", &a);
        assert!(e.is_ok());
    }

    #[test]
    fn tls_files_need_https_and_a_certificate_needs_its_key() {
        let mut a = args(None, None, None);
        a.client_cert = Some("/c.pem".into());
        let e = endpoint("https://h:1", &a).unwrap_err();
        assert!(e.to_string().contains("--client-key"), "{e}");
        a.client_key = Some("/nonexistent/k.pem".into());
        let e = endpoint("http://h:1", &a).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = endpoint("https://h:1", &a).unwrap_err();
        assert!(e.to_string().contains("/c.pem"), "{e}");
    }

    #[test]
    fn other_schemes_and_empty_servers_are_usage_errors() {
        assert!(matches!(server_url("grpc://h:1"), Err(Error::Usage(_))));
        assert!(matches!(server_url(""), Err(Error::Usage(_))));
    }

    #[test]
    fn a_given_token_wins_over_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "rgr.admin\n").unwrap();
        let (t, s) = find_token(
            &args(Some("rgr.given"), None, Some(dir.path().into())),
            Discovery::AdminTokenFile,
        )
        .unwrap();
        assert_eq!((t.as_deref(), s), (Some("rgr.given"), TokenSource::Given));
    }

    #[test]
    fn a_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.token");
        std::fs::write(&file, "  rgr.agent\n").unwrap();
        let (t, s) =
            find_token(&args(None, Some(file.clone()), None), Discovery::GivenOnly).unwrap();
        assert_eq!(
            (t.as_deref(), s),
            (Some("rgr.agent"), TokenSource::File(file))
        );
    }

    #[test]
    fn a_missing_token_file_is_an_error_naming_it() {
        let e = find_token(
            &args(None, Some("/nonexistent/t".into()), None),
            Discovery::GivenOnly,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/t"), "{e}");
    }

    #[test]
    fn the_admin_token_is_found_in_the_data_directory_for_people_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "rgr.admin\n").unwrap();
        let a = args(None, None, Some(dir.path().into()));
        let (t, _) = find_token(&a, Discovery::AdminTokenFile).unwrap();
        assert_eq!(t.as_deref(), Some("rgr.admin"));
        let (t, s) = find_token(&a, Discovery::GivenOnly).unwrap();
        assert_eq!((t, s), (None, TokenSource::None));
    }

    #[test]
    fn the_bearer_debug_never_shows_the_token() {
        let b = Bearer(Some("Bearer rgr.x.secret".parse().unwrap()));
        assert!(!format!("{b:?}").contains("secret"));
    }
}
