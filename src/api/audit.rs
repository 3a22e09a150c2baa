//! Filling the audit trail's entries from calls: the caller, the peer and
//! what each request asked for ([`Asked`]), and what each answer did
//! ([`Done`]). A mutation writes a `request` entry before it is decided
//! (when that fails, nothing changes) and a `response` entry before its
//! answer leaves; an answer that hands out credentials writes a `handout`
//! entry first, and is refused when it cannot.

use tonic::{Request, Response, Status};

use super::client_cert;
use super::Api;
use crate::audit::{Caller, Entry};
use crate::domain::access::Principal;
use crate::domain::event::Role;
use crate::pb;

/// Most bytes of one request field an entry keeps.
const MAX_FIELD_BYTES: usize = 256;

/// gRPC's status code names, by number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The name of a status code as gRPC's documents spell it.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    CODES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Member => "member",
        Role::Agent => "agent",
    }
}

/// What a request asked for, in audit terms.
pub(crate) trait Asked {
    /// Fills the entry's request fields (never a secret).
    fn asked(&self, api: &Api, entry: &mut Entry);
}

/// What an answer did, in audit terms.
pub(crate) trait Done {
    /// Fills the entry's outcome fields (never a secret).
    fn done(&self, entry: &mut Entry);
}

/// The refusal of a call whose audit entry could not be written.
fn unavailable(e: &crate::audit::Unavailable) -> Status {
    Status::unavailable(format!("{e}: the call is refused until it can be"))
}

impl Api {
    /// Returns an entry of `phase` for a call of `rpc`: the time, the peer
    /// and the caller (when authenticated), and what the request asked.
    fn entry<T: Asked>(
        &self,
        phase: &'static str,
        rpc: &'static str,
        request: &Request<T>,
        who: Option<&Principal>,
    ) -> Entry {
        let mut entry = Entry::new(phase, rpc, self.app.now());
        entry.peer = request.remote_addr().map(|a| a.to_string());
        if let Some(who) = who {
            entry.caller = Caller {
                token_id: who.token_id.clone(),
                role: role_name(who.role),
                environment_id: who.environment_id.clone(),
                spiffe_id: None,
            };
            // An agent certificate authenticated the call (no token sent).
            if request.metadata().get("authorization").is_none() {
                entry.caller.spiffe_id = request
                    .peer_certs()
                    .as_deref()
                    .and_then(|c| c.first())
                    .and_then(|leaf| client_cert::spiffe_id(leaf));
            }
        }
        // What an unauthenticated caller asked is not written: anyone could
        // fill the log with it. An authenticated one's fields are bounded.
        if who.is_some() {
            request.get_ref().asked(self, &mut entry);
            entry.bound(MAX_FIELD_BYTES);
        }
        // An environment's token may leave the request's environment out.
        if entry.environment_id.is_empty() {
            if let Some(env) = who.and_then(|w| w.environment_id.as_ref()) {
                entry.environment_id.clone_from(env);
            }
        }
        entry
    }

    /// Writes a mutation's `request` entry, before anything is decided:
    /// returns it for the response, or UNAVAILABLE when it cannot be
    /// written (and nothing is done).
    pub(crate) fn audit_mutation<T: Asked>(
        &self,
        rpc: &'static str,
        request: &Request<T>,
        who: Option<&Principal>,
    ) -> Result<Option<Entry>, Status> {
        let audit = self.app.audit();
        if !audit.enabled() {
            return Ok(None);
        }
        let entry = self.entry("request", rpc, request, who);
        audit.write(&entry).map_err(|e| unavailable(&e))?;
        Ok(Some(entry))
    }

    /// Writes a mutation's `response` entry before its answer leaves: the
    /// decision, the code and what changed. When it cannot be written the
    /// answer is UNAVAILABLE (a retry with the same request id answers
    /// what was done).
    pub(crate) fn audit_outcome<T: Done>(
        &self,
        entry: Option<Entry>,
        result: Result<Response<T>, Status>,
    ) -> Result<Response<T>, Status> {
        let Some(mut entry) = entry else {
            return result;
        };
        entry.phase = "response";
        entry.time = Entry::new("", "", self.app.now()).time;
        match &result {
            Ok(response) => {
                entry.decision = "accepted";
                entry.code = "OK";
                response.get_ref().done(&mut entry);
            }
            Err(status) => {
                entry.decision = "refused";
                entry.code = code_name(status.code());
            }
        }
        self.app
            .audit()
            .write(&entry)
            .map_err(|e| unavailable(&e))?;
        result
    }

    /// Writes a `handout` entry for an answer that may carry credentials;
    /// `fill` adds what it handed out. With `required` (the answer carries
    /// a secret) a failure refuses the answer; otherwise it is only
    /// counted and logged.
    pub(crate) fn audit_handout<T: Asked>(
        &self,
        rpc: &'static str,
        request: &Request<T>,
        who: &Principal,
        required: bool,
        fill: impl FnOnce(&mut Entry),
    ) -> Result<(), Status> {
        let audit = self.app.audit();
        if !audit.enabled() {
            return Ok(());
        }
        let mut entry = self.entry("handout", rpc, request, Some(who));
        entry.code = "OK";
        fill(&mut entry);
        match audit.write(&entry) {
            Err(e) if required => Err(unavailable(&e)),
            _ => Ok(()),
        }
    }
}

impl Api {
    /// Names a credential handed out, without its secret.
    pub(crate) fn handed_out(
        &self,
        registry: &str,
        c: &crate::app::OpenCredential,
    ) -> crate::audit::HandedOut {
        crate::audit::HandedOut {
            registry: registry.to_owned(),
            registry_id: c.registry_id.clone(),
            credential_id: c.credential_id.clone(),
            username_hmac: self.app.audit().username_hmac(&c.username),
        }
    }
}

impl Asked for pb::CreateEnvironmentRequest {
    fn asked(&self, _: &Api, e: &mut Entry) {
        e.request_id.clone_from(&self.request_id);
    }
}

impl Asked for pb::DeleteEnvironmentRequest {
    fn asked(&self, _: &Api, e: &mut Entry) {
        e.environment_id.clone_from(&self.id);
        e.request_id.clone_from(&self.request_id);
    }
}

impl Asked for pb::CreateRegistryRequest {
    fn asked(&self, api: &Api, e: &mut Entry) {
        e.environment_id.clone_from(&self.environment_id);
        e.registry.clone_from(&self.address);
        e.username_hmac = api.app.audit().username_hmac(&self.username);
        e.request_id.clone_from(&self.request_id);
    }
}

impl Asked for pb::UpdateRegistryRequest {
    fn asked(&self, api: &Api, e: &mut Entry) {
        e.registry_id.clone_from(&self.id);
        e.username_hmac = api.app.audit().username_hmac(&self.username);
        e.request_id.clone_from(&self.request_id);
    }
}

/// Requests that name one registry by id.
macro_rules! asked_registry {
    ($($t:ty),*) => {$(
        impl Asked for $t {
            fn asked(&self, _: &Api, e: &mut Entry) {
                e.registry_id.clone_from(&self.id);
                e.request_id.clone_from(&self.request_id);
            }
        }
    )*};
}
asked_registry!(
    pb::ActivateRegistryRequest,
    pb::DeactivateRegistryRequest,
    pb::DeleteRegistryRequest,
    pb::VerifyRegistryRequest
);

impl Asked for pb::UpdateSettingsRequest {
    fn asked(&self, _: &Api, e: &mut Entry) {
        e.request_id.clone_from(&self.request_id);
    }
}

impl Asked for pb::CreateTokenRequest {
    fn asked(&self, _: &Api, e: &mut Entry) {
        e.environment_id.clone_from(&self.environment_id);
    }
}

impl Asked for pb::RevokeTokenRequest {
    fn asked(&self, _: &Api, e: &mut Entry) {
        e.token_id.clone_from(&self.token_id);
    }
}

impl Asked for pb::RewrapKeysRequest {
    fn asked(&self, _: &Api, _: &mut Entry) {}
}

impl Asked for pb::ResolvePullRequest {
    fn asked(&self, _: &Api, e: &mut Entry) {
        e.environment_id.clone_from(&self.environment_id);
        match &self.target {
            Some(pb::resolve_pull_request::Target::Image(i)) => e.image.clone_from(i),
            Some(pb::resolve_pull_request::Target::Registry(r)) => e.registry.clone_from(r),
            None => {}
        }
    }
}

impl Asked for pb::GetHostConfigRequest {
    fn asked(&self, _: &Api, e: &mut Entry) {
        e.environment_id.clone_from(&self.environment_id);
    }
}

impl Asked for pb::GetPullSecretRequest {
    fn asked(&self, _: &Api, e: &mut Entry) {
        e.environment_id.clone_from(&self.environment_id);
    }
}

fn registry_done(registry: Option<&pb::Registry>, revision: u64, e: &mut Entry) {
    if let Some(r) = registry {
        e.registry_id.clone_from(&r.id);
        e.credential_id.clone_from(&r.credential_id);
        e.environment_id.clone_from(&r.environment_id);
        if e.registry.is_empty() {
            e.registry.clone_from(&r.address);
        }
    }
    e.revision = Some(revision);
}

impl Done for pb::CreateEnvironmentResponse {
    fn done(&self, e: &mut Entry) {
        if let Some(env) = &self.environment {
            e.environment_id.clone_from(&env.id);
        }
        e.revision = Some(self.revision);
    }
}

impl Done for pb::DeleteEnvironmentResponse {
    fn done(&self, e: &mut Entry) {
        e.revision = Some(self.revision);
    }
}

/// Answers that carry the registry they changed.
macro_rules! done_registry {
    ($($t:ty),*) => {$(
        impl Done for $t {
            fn done(&self, e: &mut Entry) {
                registry_done(self.registry.as_ref(), self.revision, e);
            }
        }
    )*};
}
done_registry!(
    pb::CreateRegistryResponse,
    pb::UpdateRegistryResponse,
    pb::ActivateRegistryResponse,
    pb::DeactivateRegistryResponse,
    pb::VerifyRegistryResponse
);

impl Done for pb::DeleteRegistryResponse {
    fn done(&self, e: &mut Entry) {
        e.revision = Some(self.revision);
    }
}

impl Done for pb::UpdateSettingsResponse {
    fn done(&self, e: &mut Entry) {
        e.revision = Some(self.revision);
    }
}

impl Done for pb::CreateTokenResponse {
    fn done(&self, e: &mut Entry) {
        // The token's id only: its secret is what the answer carries.
        e.token_id.clone_from(&self.token_id);
        e.revision = Some(self.revision);
    }
}

impl Done for pb::RevokeTokenResponse {
    fn done(&self, e: &mut Entry) {
        e.revision = Some(self.revision);
    }
}

impl Done for pb::RewrapKeysResponse {
    fn done(&self, _: &mut Entry) {}
}
