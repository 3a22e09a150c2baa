//! The gRPC surface: tonic services over the app, authentication from the
//! `authorization` metadata, pagination, health and reflection. The only
//! place (with server.rs) that knows tonic.

pub(crate) mod audit;
mod client_cert;
pub(crate) mod convert;
mod environment;
pub(crate) mod error;
mod history;
mod key;
mod pull;
mod redact;
mod registry;
mod settings;
mod token;
mod watch;

pub use watch::{Encoded, WatchSettings};

use base64::Engine as _;
use tonic::{Request, Status};

use crate::app::App;
use crate::domain::access::Principal;
use crate::pb;

/// The encoded descriptor set of the API, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("registrar_descriptor");

/// Default and largest page sizes of list RPCs.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 500;
/// Most encoded bytes of one page's items: well under the 4 MiB a gRPC
/// client receives by default.
const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// The services of the API, sharing one app.
#[derive(Debug, Clone)]
pub struct Api {
    app: App,
    watch: WatchSettings,
    closing: tokio::sync::watch::Receiver<bool>,
    watches: watch::OpenWatches,
}

impl Api {
    /// Returns the API over an app; watch streams end when `closing` turns true.
    pub fn new(
        app: App,
        watch: WatchSettings,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            app,
            watch,
            closing,
            watches: watch::OpenWatches::default(),
        }
    }

    /// Authenticates the caller from `authorization: Bearer <token>`, or,
    /// without that metadata, from a verified TLS client certificate naming
    /// an agent (see `client_cert`). A token, when sent, always decides.
    async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let Some(value) = request.metadata().get("authorization") else {
            if let Some(leaf) = request.peer_certs().as_deref().and_then(|c| c.first()) {
                return client_cert::principal(leaf);
            }
            return Err(Status::unauthenticated(
                "missing authorization metadata: send `authorization: Bearer <token>`",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization metadata is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the authorization metadata must be `Bearer <token>`")
            })?;
        Ok(self.app.authenticate_fresh(token.trim()).await?)
    }

    /// Waits until this replica reflects at least the request's
    /// `min_revision`, within the call's deadline (`grpc-timeout`) and at
    /// most 5 s; returns the position the answer will reflect (at least).
    async fn reach<T>(&self, request: &Request<T>, min_revision: u64) -> Result<u64, Status> {
        Ok(self.app.reach(min_revision, deadline(request)).await?)
    }

    /// Returns the environment service.
    pub fn environment_service(
        &self,
    ) -> pb::environment_service_server::EnvironmentServiceServer<Self> {
        pb::environment_service_server::EnvironmentServiceServer::new(self.clone())
    }

    /// Returns the registry service.
    pub fn registry_service(&self) -> pb::registry_service_server::RegistryServiceServer<Self> {
        pb::registry_service_server::RegistryServiceServer::new(self.clone())
    }

    /// Returns the settings service.
    pub fn settings_service(&self) -> pb::settings_service_server::SettingsServiceServer<Self> {
        pb::settings_service_server::SettingsServiceServer::new(self.clone())
    }

    /// Returns the pull service.
    pub fn pull_service(&self) -> crate::pb_served::pull_service_server::PullServiceServer<Self> {
        crate::pb_served::pull_service_server::PullServiceServer::new(self.clone())
    }

    /// Returns the key service.
    pub fn key_service(&self) -> pb::key_service_server::KeyServiceServer<Self> {
        pb::key_service_server::KeyServiceServer::new(self.clone())
    }

    /// Returns the history service.
    pub fn history_service(&self) -> pb::history_service_server::HistoryServiceServer<Self> {
        pb::history_service_server::HistoryServiceServer::new(self.clone())
    }

    /// Returns the token service.
    pub fn token_service(&self) -> pb::token_service_server::TokenServiceServer<Self> {
        pb::token_service_server::TokenServiceServer::new(self.clone())
    }
}

/// Returns the time left of the call, from its `grpc-timeout` metadata
/// (digits and a unit: H, M, S, m, u or n), as gRPC's wire format defines it.
pub(crate) fn deadline<T>(request: &Request<T>) -> Option<std::time::Duration> {
    use std::time::Duration;
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let unit = value.chars().last()?;
    let amount: u64 = value[..value.len() - unit.len_utf8()].parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount.saturating_mul(3600)),
        'M' => Duration::from_secs(amount.saturating_mul(60)),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// One page of a list: how many, and the key to start after.
#[derive(Debug)]
struct Page {
    size: usize,
    after: String,
}

/// A request's `page_size`: the default for 0, at most the largest.
fn page_size(page_size: i32) -> Result<usize, Status> {
    match page_size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(error::invalid("page_size", "must not be negative")),
        n => Ok(usize::try_from(n)
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE)),
    }
}

impl Page {
    fn parse(page_size: i32, page_token: &str) -> Result<Self, Status> {
        let size = self::page_size(page_size)?;
        let after = if page_token.is_empty() {
            String::new()
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(page_token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    error::invalid("page_token", "is not a token from a previous list call")
                })?
        };
        Ok(Self { size, after })
    }

    /// Returns how many items to fetch for this page: one more than it
    /// holds, to know whether another page follows.
    fn fetch(&self) -> usize {
        self.size + 1
    }

    /// Takes one page from `items` (already positioned after the token,
    /// each with its page key and its message) and returns it with the next
    /// page's token. A page ends at `size` items or before its messages
    /// would pass [`MAX_PAGE_BYTES`] encoded, whichever comes first (one
    /// item always fits), so no page nears a client's 4 MiB receive limit.
    fn take<K: AsRef<str>, T: prost::Message>(
        &self,
        items: impl Iterator<Item = (K, T)>,
    ) -> (Vec<T>, String) {
        let mut page = Vec::new();
        let mut bytes = 0usize;
        let mut last_key = None;
        for (key, item) in items {
            let len = item.encoded_len();
            if page.len() == self.size || (!page.is_empty() && bytes + len > MAX_PAGE_BYTES) {
                let next = last_key
                    .map(|k: K| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.as_ref()))
                    .unwrap_or_default();
                return (page, next);
            }
            bytes += len;
            page.push(item);
            last_key = Some(key);
        }
        (page, String::new())
    }
}

/// A mutating request that carries an idempotency key (`request_id`).
trait Idempotent: prost::Message + Clone {
    /// The RPC's name, so equal messages of two RPCs differ.
    const RPC: &'static str;
    /// Clears the request id, which the fingerprint leaves out.
    fn clear_request_id(&mut self);
}

macro_rules! idempotent {
    ($($request:ty => $rpc:literal),* $(,)?) => {
        $(impl Idempotent for $request {
            const RPC: &'static str = $rpc;
            fn clear_request_id(&mut self) {
                self.request_id.clear();
            }
        })*
    };
}

idempotent! {
    pb::VerifyRegistryRequest => "VerifyRegistry",
    pb::CreateEnvironmentRequest => "CreateEnvironment",
    pb::DeleteEnvironmentRequest => "DeleteEnvironment",
    pb::CreateRegistryRequest => "CreateRegistry",
    pb::UpdateRegistryRequest => "UpdateRegistry",
    pb::ActivateRegistryRequest => "ActivateRegistry",
    pb::DeactivateRegistryRequest => "DeactivateRegistry",
    pb::DeleteRegistryRequest => "DeleteRegistry",
    pb::UpdateSettingsRequest => "UpdateSettings",
}

/// Returns what a request's fingerprint is taken of: its RPC and the whole
/// message, every field but `request_id`, so a retry is told from a reuse
/// of its id whatever field differs. The app keeps only a keyed hash of it,
/// never a password's hash.
fn fingerprint<R: Idempotent>(request: &R) -> zeroize::Zeroizing<Vec<u8>> {
    let mut request = request.clone();
    request.clear_request_id();
    let mut bytes =
        zeroize::Zeroizing::new(Vec::with_capacity(R::RPC.len() + 1 + request.encoded_len()));
    bytes.extend_from_slice(R::RPC.as_bytes());
    bytes.push(0);
    request.encode(&mut *bytes).expect("a Vec grows as needed");
    bytes
}
