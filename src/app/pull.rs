//! Answers for agents: ResolvePull and the credential sets behind pull
//! secrets and host configuration. Reads only the in-memory projection and
//! the in-memory data keys: no log I/O, and no lock is held while a secret
//! is opened.

use std::time::SystemTime;

use secrecy::SecretString;

use super::{App, Error, Result};
use crate::domain::access::Principal;
use crate::domain::credential::{CredentialRecord, SecretContext};
use crate::domain::error::Error as Rule;
use crate::domain::event::{Orchestration, Role};
use crate::domain::resolve::{self, Decision, DenyReason, Target};
use crate::domain::state::{Registry, RegistryState};

/// A credential opened for an entitled caller.
#[derive(Debug)]
pub struct OpenCredential {
    /// The registry it belongs to.
    pub registry_id: String,
    /// The credential's id.
    pub credential_id: String,
    /// Contact email.
    pub email: String,
    /// Username.
    pub username: String,
    /// The password, opened.
    pub password: SecretString,
    /// When it stops being handed out.
    pub expire_time: Option<SystemTime>,
}

/// A registry's trust settings and, when it has one, its opened credential.
#[derive(Debug)]
pub struct OpenRegistry {
    /// Canonical address.
    pub address: String,
    /// Plain HTTP or unverified TLS.
    pub insecure: bool,
    /// CA bundle, empty for none.
    pub ca_certificate_pem: String,
    /// The credential.
    pub credential: OpenCredential,
}

/// A registry as a host's trust files name it.
#[derive(Debug)]
pub struct HostRegistry {
    /// Canonical address.
    pub address: String,
    /// Plain HTTP or unverified TLS.
    pub insecure: bool,
    /// CA bundle, empty for none.
    pub ca_certificate_pem: String,
    /// The opened credential, when asked for.
    pub credential: Option<OpenCredential>,
}

/// The answer to ResolvePull.
#[derive(Debug)]
pub struct PullAnswer {
    /// The log position the answer reflects.
    pub revision: u64,
    /// The fully qualified image; empty for a registry question.
    pub resolved_image: String,
    /// The canonical registry.
    pub registry: String,
    /// The image's repository when the whitelist admits its registry only
    /// through repository prefixes: caches of the answer must key on it.
    pub repository_scope: Option<String>,
    /// The environment's orchestration, which shapes the answer (R2).
    pub orchestration: Orchestration,
    /// Allowed or denied.
    pub outcome: PullOutcome,
}

/// Allowed, with what the agent needs, or denied.
#[derive(Debug)]
pub enum PullOutcome {
    /// The pull may go ahead.
    Allowed {
        /// `None` for an anonymous pull (R11).
        credential: Option<OpenCredential>,
        /// Plain HTTP or unverified TLS (R12).
        insecure: bool,
        /// CA bundle (R12).
        ca_certificate_pem: String,
    },
    /// The pull is refused.
    Denied(DenyReason),
}

impl PullOutcome {
    /// The outcome's name for metrics and the audit trail: `allowed` (with
    /// a credential), `anonymous` (allowed without one), or the deny
    /// reason's.
    pub fn label(&self) -> &'static str {
        match self {
            PullOutcome::Allowed {
                credential: Some(_),
                ..
            } => "allowed",
            PullOutcome::Allowed {
                credential: None, ..
            } => "anonymous",
            PullOutcome::Denied(reason) => reason.label(),
        }
    }
}

/// A usable registry's address, trust settings and sealed credential:
/// copied out of the read lock, opened after it.
type Usable = (String, bool, String, Sealed);

/// What is copied out of the read lock to open a credential after it.
pub(super) struct Sealed {
    environment_id: String,
    registry_id: String,
    credential: CredentialRecord,
    version: u64,
}

impl Sealed {
    /// The credential of `reg`, sealed.
    pub(super) fn of(reg: &Registry) -> Self {
        Self {
            environment_id: reg.environment_id.clone(),
            registry_id: reg.id.clone(),
            credential: reg.credential.clone(),
            version: reg.credential_version,
        }
    }

    /// The id of the credential.
    pub(super) fn credential_id(&self) -> &str {
        &self.credential.credential_id
    }
}

impl App {
    /// Resolves a pull for a caller entitled to the environment.
    pub async fn resolve_pull(
        &self,
        who: &Principal,
        environment_id: &str,
        target: Target<'_>,
    ) -> Result<PullAnswer> {
        let env = who.scope(environment_id)?;
        let now = self.now();
        let (answer, sealed) = {
            let state = self.projection.read();
            let environment = state.environment(env).ok_or_else(|| missing(env))?;
            let r = resolve::resolve(&state, env, target, now)?;
            let (outcome, sealed) = match r.decision {
                Decision::Denied(reason) => (PullOutcome::Denied(reason), None),
                Decision::Allowed(reg) => (
                    PullOutcome::Allowed {
                        credential: None,
                        insecure: reg.is_some_and(|r| r.insecure),
                        ca_certificate_pem: reg
                            .map(|r| r.ca_certificate_pem.clone())
                            .unwrap_or_default(),
                    },
                    reg.map(Sealed::of),
                ),
            };
            let answer = PullAnswer {
                revision: state.position(),
                resolved_image: r.resolved_image,
                registry: r.registry.as_str().to_owned(),
                repository_scope: r.repository_scope,
                orchestration: environment.orchestration,
                outcome,
            };
            (answer, sealed)
        };
        let mut answer = answer;
        if let (Some(sealed), PullOutcome::Allowed { credential, .. }) =
            (sealed, &mut answer.outcome)
        {
            // Destroyed since it was read as live: the caller asks again.
            *credential = Some(self.open_sealed(sealed).await?.ok_or(Error::Conflict)?);
        }
        Ok(answer)
    }

    /// Returns the registries a host's trust files name, with their opened
    /// credentials when `include_auth` (agent tokens only: k3s
    /// `registries.yaml` carries them), and the revision they reflect.
    pub async fn host_registries(
        &self,
        who: &Principal,
        environment_id: &str,
        include_auth: bool,
    ) -> Result<(Vec<HostRegistry>, u64)> {
        if include_auth && who.role != Role::Agent {
            return Err(Rule::PermissionDenied(
                "credentials in host configuration are for agent tokens only".to_owned(),
            )
            .into());
        }
        let (_, regs, revision) = self.usable_registries(who, environment_id)?;
        let mut out = Vec::with_capacity(regs.len());
        for (address, insecure, ca_certificate_pem, sealed) in regs {
            let credential = if include_auth {
                match self.open_sealed(sealed).await? {
                    Some(credential) => Some(credential),
                    // Destroyed since it was read: it is not in the answer.
                    None => continue,
                }
            } else {
                None
            };
            out.push(HostRegistry {
                address,
                insecure,
                ca_certificate_pem,
                credential,
            });
        }
        Ok((out, revision))
    }

    /// Returns the registries of an environment's Kubernetes pull secret,
    /// opened (agent tokens of KUBERNETES environments only), and the
    /// revision they reflect.
    pub async fn pull_secret_registries(
        &self,
        who: &Principal,
        environment_id: &str,
    ) -> Result<(Vec<OpenRegistry>, u64)> {
        if who.role != Role::Agent {
            return Err(Rule::PermissionDenied(
                "pull secrets are for agent tokens only".to_owned(),
            )
            .into());
        }
        let (orchestration, regs, revision) = self.usable_registries(who, environment_id)?;
        if orchestration != Orchestration::Kubernetes {
            return Err(Rule::FailedPrecondition(
                "pull secrets exist for KUBERNETES environments; this one is CATTLE".to_owned(),
            )
            .into());
        }
        let mut out = Vec::with_capacity(regs.len());
        for (address, insecure, ca_certificate_pem, sealed) in regs {
            // One destroyed since it was read is left out of the answer.
            if let Some(credential) = self.open_sealed(sealed).await? {
                out.push(OpenRegistry {
                    address,
                    insecure,
                    ca_certificate_pem,
                    credential,
                });
            }
        }
        Ok((out, revision))
    }

    /// Returns the environment's orchestration, its active registries that
    /// have a usable credential and that the whitelist lets images come from
    /// (as ResolvePull would for some image of theirs), still sealed, and
    /// the revision they reflect.
    fn usable_registries(
        &self,
        who: &Principal,
        environment_id: &str,
    ) -> Result<(Orchestration, Vec<Usable>, u64)> {
        let env = who.scope(environment_id)?;
        let now = self.now();
        let (orchestration, regs, revision) = {
            let state = self.projection.read();
            let environment = state.environment(env).ok_or_else(|| missing(env))?;
            let regs: Vec<Usable> = state
                .registries_in(env, "")
                .filter(|r| r.state == RegistryState::Active)
                .filter(|r| r.credential.usable(now))
                .filter(|r| state.settings().whitelist.allows_registry(&r.address))
                .map(|r| {
                    (
                        r.address.as_str().to_owned(),
                        r.insecure,
                        r.ca_certificate_pem.clone(),
                        Sealed::of(r),
                    )
                })
                .collect();
            (environment.orchestration, regs, state.position())
        };
        Ok((orchestration, regs, revision))
    }

    /// Opens a credential read as live; `None` when it was destroyed since.
    pub(super) async fn open_sealed(&self, s: Sealed) -> Result<Option<OpenCredential>> {
        let ctx = SecretContext {
            environment_id: &s.environment_id,
            registry_id: &s.registry_id,
            credential_id: &s.credential.credential_id,
            version: s.version,
            field: "password",
        };
        let still_live = || {
            let state = self.projection.read();
            state
                .registry(&s.registry_id)
                .is_some_and(|r| r.credential.credential_id == s.credential.credential_id)
        };
        let Some(bytes) = self
            .keys
            .open(&ctx, &s.credential.password, still_live)
            .await?
        else {
            return Ok(None);
        };
        let password = String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::Crypto(crate::crypto::Error::Unseal))?;
        Ok(Some(OpenCredential {
            registry_id: s.registry_id,
            credential_id: s.credential.credential_id,
            email: s.credential.email,
            username: s.credential.username,
            password: SecretString::from(password),
            expire_time: s.credential.expire_time,
        }))
    }
}

fn missing(env: &str) -> Error {
    Error::from(Rule::NotFound {
        what: "environment",
        id: env.to_owned(),
    })
}
