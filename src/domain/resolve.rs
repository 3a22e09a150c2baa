//! Pull resolution (R10–R17): an image or a registry host, in one
//! environment, against the settings and the environment's registries. Pure:
//! it reads the state and the time it is given and returns the decision with
//! the registry whose credential may be used; opening the secret is the
//! caller's job.

use std::time::SystemTime;

use super::address::Address;
use super::error::{Error, Result};
use super::image::{ImageRef, MAX_INPUT_LEN};
use super::state::{Registry, RegistryState, State};

/// What an agent asks about.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// An image reference as `docker pull` takes it.
    Image(&'a str),
    /// A bare registry host with an optional port (credential helpers).
    Registry(&'a str),
}

/// Why a pull is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The image named a registry that is not whitelisted (R16).
    NotWhitelisted,
    /// The default registry was applied and is not whitelisted (R16).
    DefaultNotWhitelisted,
    /// The registry is deactivated in the environment (R10).
    RegistryInactive,
    /// The registry's credential has expired (R13).
    CredentialExpired,
}

impl DenyReason {
    /// Returns the reason's name in snake case, for metrics and the audit log.
    pub fn label(self) -> &'static str {
        match self {
            DenyReason::NotWhitelisted => "not_whitelisted",
            DenyReason::DefaultNotWhitelisted => "default_not_whitelisted",
            DenyReason::RegistryInactive => "registry_inactive",
            DenyReason::CredentialExpired => "credential_expired",
        }
    }

    /// Returns the message an agent shows; the whitelist ones are Rancher's.
    pub fn message(self) -> &'static str {
        match self {
            DenyReason::NotWhitelisted => "The provided registry is not whitelisted",
            DenyReason::DefaultNotWhitelisted => "The default registry is not whitelisted",
            DenyReason::RegistryInactive => {
                "The registry is deactivated in this environment: pulls from it are not allowed"
            }
            DenyReason::CredentialExpired => {
                "The registry's credential has expired and no fresh one is available"
            }
        }
    }
}

/// The decision for one pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'s> {
    /// The pull may go ahead, with the registry's credential if it has one
    /// (R11: none means anonymous).
    Allowed(Option<&'s Registry>),
    /// The pull is refused.
    Denied(DenyReason),
}

/// The answer to a pull question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution<'s> {
    /// The fully qualified image (R15); empty for a registry question.
    pub resolved_image: String,
    /// The canonical registry.
    pub registry: Address,
    /// Set when the whitelist admits the registry only through repository
    /// prefixes (`quay.io/myorg/`): the image's repository
    /// (`quay.io/myorg/app`), so a credential cached for it is never reused
    /// for another repository of the registry.
    pub repository_scope: Option<String>,
    /// Allowed or denied.
    pub decision: Decision<'s>,
}

/// Resolves a pull in `environment_id` (which the caller checked it may see).
pub fn resolve<'s>(
    state: &'s State,
    environment_id: &str,
    target: Target<'_>,
    now: SystemTime,
) -> Result<Resolution<'s>> {
    let settings = state.settings();
    let (resolved_image, registry, allowed, default_applied, repository) = match target {
        Target::Image(input) => {
            if input.len() > MAX_INPUT_LEN {
                return Err(Error::invalid(
                    "image",
                    format!("must be at most {MAX_INPUT_LEN} bytes"),
                ));
            }
            let parsed =
                ImageRef::parse(input).map_err(|e| Error::invalid("image", e.to_string()))?;
            let (image, default_applied) =
                match (&settings.default_registry, parsed.domain_explicit()) {
                    (Some(default), false) => (
                        parsed
                            .with_domain(default.as_str())
                            .map_err(|e| Error::invalid("image", e.to_string()))?,
                        true,
                    ),
                    (_, explicit) => (parsed, !explicit),
                };
            let registry = Address::parse(image.domain())
                .map_err(|e| Error::invalid("image", format!("registry part: {e}")))?;
            let allowed = settings.whitelist.allows(&registry, image.path());
            // The repository scope, only when the whitelist admits this
            // registry for some repositories and not all of them.
            let repository = (!settings.whitelist.admits_whole(&registry))
                .then(|| format!("{}/{}", registry.as_str(), image.path()));
            (
                image.to_string(),
                registry,
                allowed,
                default_applied,
                repository,
            )
        }
        Target::Registry(input) => {
            if input.len() > MAX_INPUT_LEN {
                return Err(Error::invalid(
                    "registry",
                    format!("must be at most {MAX_INPUT_LEN} bytes"),
                ));
            }
            let registry =
                Address::parse(input).map_err(|e| Error::invalid("registry", e.to_string()))?;
            let allowed = settings.whitelist.allows_registry(&registry);
            (String::new(), registry, allowed, false, None)
        }
    };
    let decision = if !allowed {
        Decision::Denied(if default_applied {
            DenyReason::DefaultNotWhitelisted
        } else {
            DenyReason::NotWhitelisted
        })
    } else {
        match state.registry_at(environment_id, &registry) {
            None => Decision::Allowed(None),
            Some(reg) if reg.state == RegistryState::Inactive => {
                Decision::Denied(DenyReason::RegistryInactive)
            }
            Some(reg) if !reg.credential.usable(now) => {
                Decision::Denied(DenyReason::CredentialExpired)
            }
            Some(reg) => Decision::Allowed(Some(reg)),
        }
    };
    Ok(Resolution {
        resolved_image,
        registry,
        repository_scope: repository,
        decision,
    })
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
