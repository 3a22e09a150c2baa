//! The one writer: authenticates callers, decides commands against the
//! projection, stores new data keys, appends with expected versions (retrying
//! on conflict), destroys replaced keys, and answers idempotent retries.

mod clock;
mod error;
mod keys;
mod pull;
mod query;
mod watch;

use std::sync::Arc;
use std::time::SystemTime;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use clock::{Clock, SystemClock};
pub use error::{Error, Result};
pub use keys::DataKeys;
pub use pull::{HostRegistry, OpenCredential, OpenRegistry, PullAnswer, PullOutcome};
pub use watch::{Change, Cursor, Item, WatchStart};

use crate::crypto::Keyring;
use crate::domain::access::Principal;
use crate::domain::command::Command;
use crate::domain::decide::{authorize, decide, Decision, Outcome};
use crate::domain::error::Error as Rule;
use crate::domain::event::{Event, Role};
use crate::domain::quota::{self, Quotas};
use crate::domain::settings::Settings;
use crate::domain::state::{Environment, Registry, State, Token};
use crate::projection::Projection;
use crate::store::{self, payload, Commit, EventLog, KeyStore, StreamAppend};

/// How often a command is re-decided after losing a race on its stream.
const MAX_ATTEMPTS: usize = 5;
/// The actor id of the admin token given in the configuration.
const CONFIGURED_ADMIN: &str = "configured-admin";
/// Prefix of bearer tokens, so they are recognizable in a secret scanner.
pub const TOKEN_PREFIX: &str = "rgr";

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

/// A token just issued: its secret is shown once.
#[derive(Debug)]
pub struct IssuedToken {
    /// The public id.
    pub token_id: String,
    /// The bearer secret.
    pub token: secrecy::SecretString,
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
        let projection = Projection::start(Arc::clone(&log)).await?;
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
        })
    }

    /// Returns the app deciding with `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
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

    /// Authenticates a bearer token (`rgr.<id>.<secret>`).
    pub fn authenticate(&self, bearer: &str) -> Result<Principal> {
        let presented: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
        if let Some(admin) = &self.configured_admin {
            if bool::from(admin.ct_eq(&presented)) {
                return Ok(Principal {
                    token_id: CONFIGURED_ADMIN.to_owned(),
                    role: Role::Admin,
                    environment_id: None,
                });
            }
        }
        let invalid = || Error::Unauthenticated("the bearer token is not valid".to_owned());
        let Some((id, secret)) = split_token(bearer) else {
            return Err(invalid());
        };
        let state = self.projection.read();
        let token = state.token(id).ok_or_else(invalid)?;
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !bool::from(token.secret_sha256.ct_eq(&hash)) {
            return Err(invalid());
        }
        Ok(Principal {
            token_id: token.id.clone(),
            role: token.role,
            environment_id: token.environment_id.clone(),
        })
    }

    /// Re-wraps up to `limit` (0: all) live data keys under the current
    /// key-encryption key, while serving (admin only).
    pub async fn rewrap_keys(&self, who: &Principal, limit: usize) -> Result<KeyStatus> {
        who.check_admin("key rotation")?;
        let (rewrapped, remaining) = self.keys.rewrap(limit).await?;
        tracing::info!(rewrapped, remaining, "re-wrapped data keys");
        let mut status = self.key_status(who).await?;
        status.rewrapped = rewrapped;
        status.remaining = remaining;
        Ok(status)
    }

    /// Returns the key-encryption keys in force and how many data keys each
    /// wraps (admin only).
    pub async fn key_status(&self, who: &Principal) -> Result<KeyStatus> {
        who.check_admin("key rotation")?;
        let usage = self.keys.usage().await?;
        let current_key_id = self.kek.current().key_id();
        let remaining = usage
            .iter()
            .filter(|(id, _)| **id != current_key_id)
            .map(|(_, n)| n)
            .sum();
        Ok(KeyStatus {
            current_key_id,
            loaded_key_ids: self.kek.key_ids(),
            usage,
            rewrapped: 0,
            remaining,
        })
    }

    /// Checks that an authenticated caller still holds: its token is not
    /// revoked and its environment not deleted. Long-lived calls (watch
    /// streams) ask again after every change. The configured admin token
    /// and client certificates are not in the log and cannot be revoked.
    pub fn check_still_valid(&self, who: &Principal) -> Result<()> {
        let state = self.projection.read();
        let from_log = who.token_id != CONFIGURED_ADMIN && !who.token_id.starts_with("cert:");
        if from_log && state.token(&who.token_id).is_none() {
            return Err(Error::Unauthenticated(
                "the token was revoked; the stream ends".to_owned(),
            ));
        }
        if let Some(env) = &who.environment_id {
            if state.environment(env).is_none() {
                return Err(Rule::NotFound {
                    what: "environment",
                    id: env.clone(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Issues a token with a fresh secret; the secret is in the answer only.
    pub async fn create_token(
        &self,
        who: &Principal,
        role: Option<Role>,
        environment_id: String,
        description: String,
    ) -> Result<IssuedToken> {
        let issued = IssuedToken::generate();
        self.issue_token(who, role, environment_id, description, &issued)
            .await?;
        Ok(issued)
    }

    /// Records a token whose secret the caller generated (the bootstrap
    /// admin token is written to its file before it is recorded).
    pub async fn issue_token(
        &self,
        who: &Principal,
        role: Option<Role>,
        environment_id: String,
        description: String,
        token: &IssuedToken,
    ) -> Result<()> {
        let secret = token
            .secret()
            .ok_or_else(|| Error::Unauthenticated("malformed token".to_owned()))?;
        let secret_sha256: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.execute(who, "", &[], || Command::CreateToken {
            token_id: token.token_id.clone(),
            role,
            environment_id: environment_id.clone(),
            description: description.clone(),
            secret_sha256,
        })
        .await?;
        Ok(())
    }

    /// Executes a command. `make` builds it (it is called again on a retry
    /// after a conflict, with the same ids). A non-empty `request_id` makes
    /// the call idempotent: a retry of the same `request` (the request's
    /// bytes, which the log keeps only as a keyed fingerprint) returns the
    /// first result; a different request with the same id is refused.
    pub async fn execute(
        &self,
        who: &Principal,
        request_id: &str,
        request: &[u8],
        make: impl Fn() -> Command,
    ) -> Result<View> {
        check_request_id(request_id)?;
        if let Some(record) = self.log.find_request(&who.token_id, request_id).await? {
            return self
                .replay_request(who, &make(), request_id, request, record)
                .await;
        }
        let fingerprint = self.kek.fingerprint(&[request]);
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let mut sealer = self.keys.sealer();
            let command = make();
            let name = command.name();
            let decision = {
                let state = self.projection.read();
                decide(&state, who, command, now, &mut sealer)
                    .and_then(|d| quota::check(&state, &d, &self.quotas).map(|()| d))
            };
            let decision = decision.inspect_err(|e| {
                tracing::debug!(command = name, actor = %who.token_id, error = %e, "command refused");
            })?;
            let destroyed = destroyed(&decision);
            let commit = Commit {
                appends: decision
                    .appends
                    .iter()
                    .map(|a| StreamAppend {
                        stream: a.stream.clone(),
                        expected_version: a.expected_version,
                        events: a.events.iter().map(payload::encode).collect(),
                    })
                    .collect(),
                actor: who.token_id.clone(),
                request_id: request_id.to_owned(),
                request_fingerprint: fingerprint.to_vec(),
                time: now,
                keys: store::KeyChanges {
                    created: self.keys.wrap_new(&sealer),
                    destroyed: destroyed.clone(),
                },
            };
            match self.log.append(commit).await {
                Ok(recorded) => {
                    self.keys.committed(&sealer, &destroyed);
                    let last = recorded.last().map_or(0, |e| e.position);
                    tracing::info!(command = name, actor = %who.token_id, position = last, "command recorded");
                    self.projection.wait_for(last).await;
                    return self.view(&decision.outcome, &decision, last).await;
                }
                Err(store::Error::Conflict { .. }) => {
                    // Let the projection catch up with whatever won the race.
                    self.projection.wait_for(self.log.head()).await;
                }
                Err(store::Error::DuplicateRequest { record }) => {
                    return self
                        .replay_request(who, &make(), request_id, request, record)
                        .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict)
    }

    /// Answers a retry: the view as of the first commit of the request.
    ///
    /// The caller is authorized exactly as on a first call: its role must
    /// allow the command, and the object answered must be in its scope.
    async fn replay_request(
        &self,
        who: &Principal,
        command: &Command,
        request_id: &str,
        request: &[u8],
        record: store::RequestRecord,
    ) -> Result<View> {
        authorize(who, command)?;
        if !self
            .kek
            .fingerprint_matches(&[request], &record.fingerprint)
        {
            return Err(Error::RequestReused(request_id.to_owned()));
        }
        let count =
            usize::try_from(record.last_position - record.first_position + 1).unwrap_or(usize::MAX);
        let envelopes = self.log.read(record.first_position, count).await?;
        let mut outcome = Outcome::Removed;
        for e in &envelopes {
            let r = payload::decode(e)?;
            outcome = match r.event {
                Event::EnvironmentCreated { environment_id, .. } => {
                    Outcome::Environment(environment_id)
                }
                Event::RegistryCreated { registry_id, .. }
                | Event::CredentialReplaced { registry_id, .. }
                | Event::RegistryActivated { registry_id }
                | Event::RegistryDeactivated { registry_id } => Outcome::Registry(registry_id),
                Event::SettingsUpdated { .. } => Outcome::Settings,
                Event::TokenCreated { token_id, .. } => Outcome::Token(token_id),
                // A deletion's answer is empty; the refresher's events carry
                // no request id, so no retry ever names them.
                Event::EnvironmentDeleted { .. }
                | Event::RegistryDeleted { .. }
                | Event::TokenRevoked { .. }
                | Event::EcrTokenRefreshed { .. }
                | Event::EcrRefreshFailed { .. } => continue,
            };
        }
        let decision = Decision {
            appends: Vec::new(),
            outcome: outcome.clone(),
        };
        self.projection.wait_for(record.last_position).await;
        let view = self
            .view_at(&outcome, &decision, record.last_position, &envelopes)
            .await?;
        let environment = match &view {
            View::Environment(e) => Some(e.id.as_str()),
            View::Registry(r) => Some(r.environment_id.as_str()),
            View::Token(t) => t.environment_id.as_deref(),
            View::Settings(_) | View::Removed => None,
        };
        if let Some(environment) = environment {
            if !who.sees(environment) {
                return Err(Rule::NotFound {
                    what: "environment",
                    id: environment.to_owned(),
                }
                .into());
            }
        }
        Ok(view)
    }

    async fn view(&self, outcome: &Outcome, decision: &Decision, position: u64) -> Result<View> {
        self.view_at(outcome, decision, position, &[]).await
    }

    /// Folds the streams the outcome lives in up to `position`, so the
    /// answer shows the object as that commit left it.
    async fn view_at(
        &self,
        outcome: &Outcome,
        decision: &Decision,
        position: u64,
        commit: &[store::Envelope],
    ) -> Result<View> {
        let mut streams: Vec<String> = decision
            .appends
            .iter()
            .filter(|a| !a.events.is_empty())
            .map(|a| a.stream.clone())
            .collect();
        streams.extend(commit.iter().map(|e| e.stream.clone()));
        streams.dedup();
        let state = self.fold_streams(&streams, position).await?;
        Ok(match outcome {
            Outcome::Environment(id) => state
                .environment(id)
                .cloned()
                .map_or(View::Removed, View::Environment),
            Outcome::Registry(id) => state
                .registry(id)
                .cloned()
                .map_or(View::Removed, |r| View::Registry(Box::new(r))),
            Outcome::Settings => View::Settings(state.settings().clone()),
            Outcome::Token(id) => state.token(id).cloned().map_or(View::Removed, View::Token),
            Outcome::Removed => View::Removed,
        })
    }
}

impl App {
    /// Folds the records of `streams` up to and including `up_to`, in log
    /// order: the objects those streams hold, as that position left them.
    async fn fold_streams(&self, streams: &[String], up_to: u64) -> Result<State> {
        let mut records = Vec::new();
        for stream in streams {
            for e in self.log.read_stream(stream, up_to).await? {
                records.push(payload::decode(&e)?);
            }
        }
        records.sort_by_key(|r| r.position);
        let mut state = State::default();
        for r in &records {
            state.apply(r);
        }
        Ok(state)
    }
}

impl IssuedToken {
    /// Generates a token: a random id and 256 random bits of secret.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        use base64::Engine as _;
        let secret = zeroize::Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        );
        let token_id = new_id();
        Self {
            token: secrecy::SecretString::from(format!("{TOKEN_PREFIX}.{token_id}.{}", *secret)),
            token_id,
        }
    }

    /// Parses a token read back from a file.
    pub fn parse(token: &str) -> Option<Self> {
        let (id, _) = split_token(token)?;
        Some(Self {
            token_id: id.to_owned(),
            token: secrecy::SecretString::from(token.to_owned()),
        })
    }

    fn secret(&self) -> Option<&str> {
        use secrecy::ExposeSecret as _;
        split_token(self.token.expose_secret()).map(|(_, s)| s)
    }
}

/// Splits `rgr.<id>.<secret>` into id and secret.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(TOKEN_PREFIX), Some(id), Some(secret)) if !id.is_empty() && secret.len() >= 32 => {
            Some((id, secret))
        }
        _ => None,
    }
}

/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Checks a request id: at most 128 bytes of `[A-Za-z0-9._:-]`.
fn check_request_id(request_id: &str) -> Result<()> {
    if request_id.len() > MAX_REQUEST_ID_LEN {
        return Err(Rule::invalid(
            "request_id",
            format!(
                "is {} bytes long; the most is {MAX_REQUEST_ID_LEN}",
                request_id.len()
            ),
        )
        .into());
    }
    if let Some(c) = request_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(Rule::invalid(
            "request_id",
            format!("contains {c:?}; use only letters, digits and . _ : -"),
        )
        .into());
    }
    Ok(())
}

/// Returns the credentials a decision destroys (R7, R10).
fn destroyed(decision: &Decision) -> Vec<String> {
    decision
        .appends
        .iter()
        .flat_map(|a| &a.events)
        .filter_map(|e| match e {
            Event::CredentialReplaced {
                previous_credential_id,
                ..
            } => Some(previous_credential_id.clone()),
            Event::RegistryDeleted { credential_id, .. } => Some(credential_id.clone()),
            _ => None,
        })
        .collect()
}

/// Returns a new random id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod execute_tests;
