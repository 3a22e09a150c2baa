//! The login a Docker client makes, and nothing more: `GET /v2/`; on 401
//! the `WWW-Authenticate` challenge is answered, with HTTP Basic or with a
//! token fetched from the Bearer realm the registry names (HTTP Basic
//! there). The registry's trust settings apply to every connection: its CA
//! bundle beside the system's roots, or for an insecure registry no
//! certificate check and plain HTTP when TLS cannot be spoken (R12).
//!
//! Bounded: one deadline for the whole login, a connect timeout, at most
//! [`Limits::max_body`] bytes read of any answer, and redirects only from
//! the token service to its own host, never from https to http unless the
//! registry is insecure. Messages name statuses, hosts and paths, never a
//! password, a token or an answer's body.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, LOCATION, USER_AGENT, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};

use super::challenge::Challenge;
use crate::domain::address::Address;

/// Docker Hub's API host: the registry `index.docker.io` is served there.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// What a login may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connecting to one host.
    pub connect: Duration,
    /// The whole login: every connection, request and answer.
    pub total: Duration,
    /// The most bytes read of one answer.
    pub max_body: usize,
    /// The most redirects the token service may answer in a row.
    pub max_redirects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            total: Duration::from_secs(15),
            max_body: 64 * 1024,
            max_redirects: 3,
        }
    }
}

/// The credential and the registry to check it against.
#[derive(Debug)]
pub struct Target<'a> {
    /// The registry's address.
    pub address: &'a Address,
    /// Plain HTTP or unverified TLS.
    pub insecure: bool,
    /// The registry's CA bundle, empty for none.
    pub ca_certificate_pem: &'a str,
    /// The username.
    pub username: &'a str,
    /// The password.
    pub password: &'a SecretString,
}

/// What a login found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The registry accepted the credential (or asks for none).
    Accepted(String),
    /// The registry or its token service refused the credential.
    Rejected(String),
    /// The registry could not be asked: unreachable, TLS, a timeout, or an
    /// answer no registry gives.
    Failed(String),
}

impl Verdict {
    /// Whether the registry accepted the credential.
    pub fn ok(&self) -> bool {
        matches!(self, Verdict::Accepted(_))
    }

    /// What happened, without secrets.
    pub fn message(&self) -> &str {
        match self {
            Verdict::Accepted(m) | Verdict::Rejected(m) | Verdict::Failed(m) => m,
        }
    }

    /// The metrics label: `ok`, `rejected` or `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Accepted(_) => "ok",
            Verdict::Rejected(_) => "rejected",
            Verdict::Failed(_) => "failed",
        }
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// Logs in to registries.
#[derive(Debug, Clone)]
pub struct Verifier {
    limits: Limits,
    system_roots: Arc<OnceLock<Vec<CertificateDer<'static>>>>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Verifier {
    /// Returns a verifier within `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            system_roots: Arc::new(OnceLock::new()),
        }
    }

    /// Returns the limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Logs in to the target's registry with its credential.
    pub async fn check(&self, target: &Target<'_>) -> Verdict {
        let host = api_host(target.address);
        match tokio::time::timeout(self.limits.total, self.login(target, &host)).await {
            Ok(verdict) => verdict,
            Err(_) => Verdict::Failed(format!(
                "the login at {host} did not finish within {} s",
                self.limits.total.as_secs()
            )),
        }
    }

    async fn login(&self, target: &Target<'_>, host: &str) -> Verdict {
        let client = match self.client(target) {
            Ok(c) => c,
            Err(e) => return Verdict::Failed(e),
        };
        let login = Login {
            verifier: self,
            client,
            target,
        };
        // An insecure registry is tried over TLS first, as Docker does.
        let mut bases = vec![format!("https://{host}")];
        if target.insecure {
            bases.push(format!("http://{host}"));
        }
        let mut unreachable = Vec::new();
        for base in &bases {
            let url = format!("{base}/v2/");
            match login.get(&url, None).await {
                Ok(answer) => return login.answer_challenge(&url, answer).await,
                Err(e) => unreachable.push(format!("cannot reach {url}: {e}")),
            }
        }
        Verdict::Failed(unreachable.join("; nor "))
    }

    fn client(&self, target: &Target<'_>) -> Result<Client, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let tls = if target.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(crate::crypto::Unchecked::new(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            let system = self.system_roots.get_or_init(|| {
                rustls_native_certs::load_native_certs()
                    .certs
                    .into_iter()
                    .collect()
            });
            for cert in system {
                // One unreadable system root does not stop the others.
                let _ = roots.add(cert.clone());
            }
            use rustls::pki_types::pem::PemObject;
            for cert in CertificateDer::pem_slice_iter(target.ca_certificate_pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("the registry's CA bundle: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the registry's CA bundle: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.limits.connect));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build(https),
        )
    }
}

/// Returns the host (and port) the registry's API is served at.
fn api_host(address: &Address) -> String {
    if address.is_docker_hub() {
        DOCKER_HUB_API.to_owned()
    } else {
        address.as_str().to_owned()
    }
}

/// One answer: its status, headers and (bounded) body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

struct Login<'a> {
    verifier: &'a Verifier,
    client: Client,
    target: &'a Target<'a>,
}

impl Login<'_> {
    async fn get(&self, url: &str, auth: Option<HeaderValue>) -> Result<Answer, String> {
        let mut request = http::Request::get(url)
            .header(USER_AGENT, concat!("registrar/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building the request: {e}"))?;
        if let Some(mut value) = auth {
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| crate::telemetry::error_chain(&e))?;
        let (parts, body) = response.into_parts();
        let limit = self.verifier.limits.max_body;
        let body = http_body_util::Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("{url} answered more than {limit} bytes")
                } else {
                    format!("reading the answer of {url}: {e}")
                }
            })?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn basic(&self) -> HeaderValue {
        let pair = zeroize::Zeroizing::new(format!(
            "{}:{}",
            self.target.username,
            self.target.password.expose_secret()
        ));
        let encoded = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()),
        );
        // Base64 is always a valid header value.
        HeaderValue::from_str(&format!("Basic {}", encoded.as_str()))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic"))
    }

    /// Answers `GET /v2/`'s first answer.
    async fn answer_challenge(&self, url: &str, first: Answer) -> Verdict {
        match first.status {
            StatusCode::OK => {
                return Verdict::Accepted(format!(
                    "{url} answers without asking for credentials; the registry accepts anonymous pulls"
                ))
            }
            StatusCode::UNAUTHORIZED => {}
            status => return Verdict::Failed(unexpected(url, status)),
        }
        let challenges = first
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(Challenge::parse)
            .collect::<Vec<_>>();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            return self.bearer(url, bearer).await;
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match self.get(url, Some(self.basic())).await {
                Ok(a) if a.status == StatusCode::OK => {
                    Verdict::Accepted("the registry accepted the credential (Basic)".to_owned())
                }
                Ok(a) if rejected(a.status) => Verdict::Rejected(format!(
                    "the registry rejected the credential: {} from {url}",
                    a.status.as_u16()
                )),
                Ok(a) => Verdict::Failed(unexpected(url, a.status)),
                Err(e) => Verdict::Failed(format!("cannot reach {url}: {e}")),
            };
        }
        Verdict::Failed(format!(
            "{url} answered 401 without a Basic or Bearer challenge"
        ))
    }

    /// Fetches a token from the challenge's realm, then logs in with it.
    async fn bearer(&self, url: &str, challenge: &Challenge) -> Verdict {
        let Some(realm) = challenge.param("realm") else {
            return Verdict::Failed(format!("{url} answered a Bearer challenge without a realm"));
        };
        let realm: Uri = match realm.parse() {
            Ok(u) => u,
            Err(_) => {
                return Verdict::Failed(format!("{url} named a token realm that is not a URL"))
            }
        };
        let Some(realm_host) = realm.authority().map(|a| a.as_str().to_owned()) else {
            return Verdict::Failed(format!("{url} named a token realm without a host"));
        };
        let shown = shown(&realm);
        if let Err(e) = self.allowed_scheme(&realm) {
            return Verdict::Failed(format!("the token realm {shown}: {e}"));
        }
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            if let Some(scope) = challenge.param("scope") {
                query.append_pair("scope", scope);
            }
            query.append_pair("account", self.target.username);
            query.finish()
        };
        let joined = match realm.query() {
            Some(q) if !q.is_empty() => format!("{}&{query}", realm),
            _ => format!("{}?{query}", realm.to_string().trim_end_matches('?')),
        };
        let mut next = joined;
        let mut redirects = 0;
        let answer = loop {
            let answer = match self.get(&next, Some(self.basic())).await {
                Ok(a) => a,
                Err(e) => {
                    return Verdict::Failed(format!(
                        "cannot reach the token service at {shown}: {e}"
                    ))
                }
            };
            if !answer.status.is_redirection() {
                break answer;
            }
            redirects += 1;
            if redirects > self.verifier.limits.max_redirects {
                return Verdict::Failed(format!(
                    "the token service at {shown} redirected more than {} times",
                    self.verifier.limits.max_redirects
                ));
            }
            match self.redirect(&next, &answer.headers, &realm_host) {
                Ok(to) => next = to,
                Err(e) => return Verdict::Failed(format!("the token service at {shown}: {e}")),
            }
        };
        if rejected(answer.status) {
            return Verdict::Rejected(format!(
                "the registry rejected the credential: {} from {shown}",
                answer.status.as_u16()
            ));
        }
        if answer.status != StatusCode::OK {
            return Verdict::Failed(format!(
                "the token service at {shown} answered {}",
                answer.status.as_u16()
            ));
        }
        let Some(token) = token_of(&answer.body) else {
            return Verdict::Failed(format!(
                "the token service at {shown} answered without a token"
            ));
        };
        let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())) else {
            return Verdict::Failed(format!(
                "the token service at {shown} answered a token that is not a header value"
            ));
        };
        match self.get(url, Some(value)).await {
            Ok(a) if a.status == StatusCode::OK => Verdict::Accepted(format!(
                "the registry accepted the credential (a token from {realm_host})"
            )),
            Ok(a) if rejected(a.status) => Verdict::Rejected(format!(
                "the registry rejected the credential: {} from {url} with the token from {shown}",
                a.status.as_u16()
            )),
            Ok(a) => Verdict::Failed(unexpected(url, a.status)),
            Err(e) => Verdict::Failed(format!("cannot reach {url}: {e}")),
        }
    }

    /// https always; http only for an insecure registry.
    fn allowed_scheme(&self, uri: &Uri) -> Result<(), String> {
        match uri.scheme_str() {
            Some("https") => Ok(()),
            Some("http") if self.target.insecure => Ok(()),
            Some("http") => {
                Err("plain HTTP is refused for a registry that is not insecure".to_owned())
            }
            _ => Err("only https (or http for an insecure registry) is followed".to_owned()),
        }
    }

    /// Returns where a redirect leads, if it may be followed: the realm's
    /// own host, by an allowed scheme.
    fn redirect(
        &self,
        from: &str,
        headers: &HeaderMap,
        realm_host: &str,
    ) -> Result<String, String> {
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("a redirect without a Location")?;
        let to: Uri = location
            .parse()
            .map_err(|_| "a redirect to something that is not a URL".to_owned())?;
        if to.scheme().is_none() {
            // Relative: the same scheme and host.
            let from: Uri = from.parse().map_err(|_| "a bad URL".to_owned())?;
            let scheme = from.scheme_str().unwrap_or("https");
            let path = if location.starts_with('/') {
                location.to_owned()
            } else {
                return Err("a redirect to a relative path is not followed".to_owned());
            };
            return Ok(format!("{scheme}://{realm_host}{path}"));
        }
        self.allowed_scheme(&to)?;
        let host = to.authority().map(|a| a.as_str()).unwrap_or_default();
        if !host.eq_ignore_ascii_case(realm_host) {
            return Err(format!(
                "a redirect to another host ({}) is not followed",
                to.host().unwrap_or_default()
            ));
        }
        Ok(location.to_owned())
    }
}

/// 401 and 403 refuse a credential.
fn rejected(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
}

fn unexpected(url: &str, status: StatusCode) -> String {
    format!(
        "{url} answered {}, not a Docker registry's answer",
        status.as_u16()
    )
}

/// A URL as messages show it: scheme, host and path, no query.
fn shown(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default(),
        uri.path()
    )
}

/// The token of a token service's answer (`token`, or OAuth's
/// `access_token`).
fn token_of(body: &[u8]) -> Option<SecretString> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .map(SecretString::from)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
