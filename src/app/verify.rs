//! Credentials checked against their registries: `verify` on
//! CreateRegistry and UpdateRegistry (a login with the new credential
//! before it is recorded), VerifyRegistry (a login with the current one),
//! and the background check (`crate::verify::schedule`).
//!
//! A stored credential is sent to its registry only when ResolvePull would
//! hand it out for some image of that registry: the registry is active, the
//! credential is not expired and the whitelist admits the registry. The
//! caller must be allowed to change the registry.

use secrecy::SecretString;

use super::execute::check_request_id;
use super::{App, Executed, Result};
use crate::domain::access::Principal;
use crate::domain::address::Address;
use crate::domain::command::{Command, Verified};
use crate::domain::decide::{decide, Decision};
use crate::domain::error::Error as Rule;
use crate::domain::event::Event;
use crate::domain::quota;
use crate::domain::state::{Registry, RegistryState, State};
use crate::verify::{Target, Verdict};

/// What started a check, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `verify` on CreateRegistry or UpdateRegistry.
    Write,
    /// VerifyRegistry.
    OnDemand,
    /// The background check.
    Background,
}

impl Trigger {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Write => "write",
            Trigger::OnDemand => "on_demand",
            Trigger::Background => "background",
        }
    }
}

/// A credential and where it goes, copied out of the read lock.
struct Owned {
    address: Address,
    insecure: bool,
    ca_certificate_pem: String,
    username: String,
    password: SecretString,
}

impl Owned {
    fn target(&self) -> Target<'_> {
        Target {
            address: &self.address,
            insecure: self.insecure,
            ca_certificate_pem: &self.ca_certificate_pem,
            username: &self.username,
            password: &self.password,
        }
    }
}

impl App {
    /// Executes a CreateRegistry or UpdateRegistry command after a login
    /// with its credential: the command is decided first (nothing invalid
    /// or unauthorized reaches a registry), a credential the registry
    /// refuses or a registry that cannot be asked is FAILED_PRECONDITION
    /// with nothing recorded, and an accepted one is recorded with the
    /// login's result. A retry of a recorded request is answered from the
    /// log without a second login.
    pub async fn execute_verified(
        &self,
        who: &Principal,
        request_id: &str,
        request: &[u8],
        command: Command,
    ) -> Result<Executed> {
        check_request_id(request_id)?;
        if self
            .log
            .find_request(&who.token_id, request_id)
            .await?
            .is_some()
        {
            return self
                .execute(who, request_id, request, || command.clone())
                .await;
        }
        let owned = self.new_credential_target(who, &command)?;
        let verdict = self.verifier.check(&owned.target()).await;
        self.metrics
            .verification(Trigger::Write.label(), verdict.label());
        let message = match verdict {
            Verdict::Accepted(m) => m,
            Verdict::Rejected(m) | Verdict::Failed(m) => {
                return Err(Rule::FailedPrecondition(format!("{m}; nothing was recorded")).into())
            }
        };
        let command = with_verified(command, Some(Verified { ok: true, message }));
        self.execute(who, request_id, request, || command.clone())
            .await
    }

    /// Decides `command` on the current view without recording it, and
    /// returns the credential it would record with its registry's trust
    /// settings.
    fn new_credential_target(&self, who: &Principal, command: &Command) -> Result<Owned> {
        let password = match command {
            Command::CreateRegistry { credential, .. } => credential.password.clone(),
            Command::UpdateRegistry { password, .. } => password
                .clone()
                .unwrap_or_else(|| SecretString::from(String::new())),
            _ => {
                return Err(Rule::invalid("verify", "only a new credential can be verified").into())
            }
        };
        let state = self.projection.read();
        let mut sealer = self.keys.sealer();
        let decision: Decision = decide(&state, who, command.clone(), self.now(), &mut sealer)
            .and_then(|d| quota::check(&state, &d, &self.quotas).map(|()| d))?;
        let event = decision
            .appends
            .iter()
            .flat_map(|a| &a.events)
            .next()
            .ok_or_else(|| Rule::invalid("verify", "the command records no credential"))?;
        let (address, insecure, ca_certificate_pem, credential) = match event {
            Event::RegistryCreated {
                address,
                insecure,
                ca_certificate_pem,
                credential,
                ..
            } => (address.clone(), *insecure, ca_certificate_pem, credential),
            Event::CredentialReplaced {
                registry_id,
                insecure,
                ca_certificate_pem,
                credential,
                ..
            } => {
                let reg = state
                    .registry(registry_id)
                    .ok_or_else(|| Rule::invalid("verify", "the registry is gone"))?;
                (
                    reg.address.clone(),
                    *insecure,
                    ca_certificate_pem,
                    credential,
                )
            }
            _ => return Err(Rule::invalid("verify", "the command records no credential").into()),
        };
        if credential.ecr.is_some() {
            return Err(Rule::invalid(
                "verify",
                "an ECR registry with access keys is checked by its token refresh (see last_verification); leave verify unset",
            )
            .into());
        }
        Ok(Owned {
            address,
            insecure,
            ca_certificate_pem: ca_certificate_pem.clone(),
            username: credential.username.clone(),
            password,
        })
    }

    /// Logs in to a registry with its current credential and records the
    /// result (VerifyRegistry, and the background check as the system).
    /// A registry whose credential pulls may not use is refused with
    /// FAILED_PRECONDITION and not contacted.
    pub async fn verify_registry(
        &self,
        who: &Principal,
        request_id: &str,
        request: &[u8],
        registry_id: &str,
        trigger: Trigger,
    ) -> Result<Executed> {
        check_request_id(request_id)?;
        let placeholder = || Command::RecordVerification {
            registry_id: registry_id.to_owned(),
            credential_id: String::new(),
            verified: Verified {
                ok: false,
                message: String::new(),
            },
        };
        if self
            .log
            .find_request(&who.token_id, request_id)
            .await?
            .is_some()
        {
            return self.execute(who, request_id, request, placeholder).await;
        }
        let (sealed, address, insecure, ca_certificate_pem) = {
            let state = self.projection.read();
            let reg = state.registry(registry_id).ok_or_else(|| Rule::NotFound {
                what: "registry",
                id: registry_id.to_owned(),
            })?;
            who.check_manage(&reg.environment_id, "registry", registry_id)?;
            check_sendable(&state, reg, self.now())?;
            (
                super::pull::Sealed::of(reg),
                reg.address.clone(),
                reg.insecure,
                reg.ca_certificate_pem.clone(),
            )
        };
        let credential_id = sealed.credential_id().to_owned();
        let open = self.open_sealed(sealed).await?.ok_or_else(|| {
            Rule::FailedPrecondition(format!(
                "registry {registry_id}'s credential was replaced or deleted meanwhile"
            ))
        })?;
        let owned = Owned {
            address,
            insecure,
            ca_certificate_pem,
            username: open.username.clone(),
            password: open.password,
        };
        let verdict = self.verifier.check(&owned.target()).await;
        self.metrics.verification(trigger.label(), verdict.label());
        let verified = Verified {
            ok: verdict.ok(),
            message: verdict.message().to_owned(),
        };
        self.execute(who, request_id, request, || Command::RecordVerification {
            registry_id: registry_id.to_owned(),
            credential_id: credential_id.clone(),
            verified: verified.clone(),
        })
        .await
    }
}

/// Refuses a registry whose credential ResolvePull would not hand out for
/// any image of it, so a check never sends it anywhere.
pub(crate) fn check_sendable(
    state: &State,
    reg: &Registry,
    now: std::time::SystemTime,
) -> std::result::Result<(), Rule> {
    let id = &reg.id;
    if reg.state != RegistryState::Active {
        return Err(Rule::FailedPrecondition(format!(
            "registry {id} is inactive: pulls do not use its credential, so it is not sent to be checked"
        )));
    }
    if reg.credential.ecr.is_some() && reg.credential.password.ciphertext.is_empty() {
        return Err(Rule::FailedPrecondition(format!(
            "registry {id} has no ECR token yet; its access keys are checked by the token refresh"
        )));
    }
    if !reg.credential.usable(now) {
        return Err(Rule::FailedPrecondition(format!(
            "registry {id}'s credential has expired: pulls do not use it, so it is not sent to be checked"
        )));
    }
    if !state.settings().whitelist.allows_registry(&reg.address) {
        return Err(Rule::FailedPrecondition(format!(
            "registry {id} ({}) is not on the whitelist: pulls do not use its credential, so it is not sent to be checked",
            reg.address
        )));
    }
    Ok(())
}

fn with_verified(mut command: Command, verified: Option<Verified>) -> Command {
    if let Command::CreateRegistry { verified: v, .. }
    | Command::UpdateRegistry { verified: v, .. } = &mut command
    {
        *v = verified;
    }
    command
}
