//! Events, in the past tense: what happened, as the log records it. Each
//! event belongs to one stream; a recorded event carries its place in the log.

use std::time::SystemTime;

use super::address::{Address, RegistryKind};
use super::credential::{CredentialRecord, SealedSecret};
use super::whitelist::Whitelist;

/// The orchestration type of an environment (R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Orchestration {
    /// Rancher's Cattle: agents call the Docker API.
    Cattle,
    /// Kubernetes: kubelets and pull secrets.
    Kubernetes,
}

/// What a token's bearer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Manage one environment's registries.
    Member,
    /// Resolve, watch and fetch host configuration for one environment.
    Agent,
}

/// Why a credential replaced another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialCause {
    /// A credential was added for an address that had one (R7).
    Added,
    /// The registry was edited (R8).
    Edited,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An environment was created.
    EnvironmentCreated {
        /// Its id.
        environment_id: String,
        /// Its display name.
        name: String,
        /// Its orchestration type, fixed for its life.
        orchestration: Orchestration,
    },
    /// An environment was deleted, after all its registries.
    EnvironmentDeleted {
        /// Its id.
        environment_id: String,
    },
    /// A registry was created with its first credential.
    RegistryCreated {
        /// Its id.
        registry_id: String,
        /// The environment it belongs to.
        environment_id: String,
        /// Its kind.
        kind: RegistryKind,
        /// Its canonical address.
        address: Address,
        /// Whether it is reached over plain HTTP or unverified TLS.
        insecure: bool,
        /// Its CA bundle, empty for none.
        ca_certificate_pem: String,
        /// Its credential.
        credential: CredentialRecord,
    },
    /// A registry's credential was replaced; the previous one is destroyed.
    CredentialReplaced {
        /// The registry.
        registry_id: String,
        /// The new credential.
        credential: CredentialRecord,
        /// The destroyed credential.
        previous_credential_id: String,
        /// The trust settings from now on.
        insecure: bool,
        /// The CA bundle from now on.
        ca_certificate_pem: String,
        /// Why.
        cause: CredentialCause,
    },
    /// A registry was deactivated: pulls from it are denied.
    RegistryDeactivated {
        /// The registry.
        registry_id: String,
    },
    /// A registry was activated again.
    RegistryActivated {
        /// The registry.
        registry_id: String,
    },
    /// A registry was deleted and its credential destroyed.
    RegistryDeleted {
        /// The registry.
        registry_id: String,
        /// The destroyed credential.
        credential_id: String,
    },
    /// A fresh ECR token was fetched with the registry's access keys (R14).
    EcrTokenRefreshed {
        /// The registry.
        registry_id: String,
        /// The credential whose keys fetched it.
        credential_id: String,
        /// The token (the password of user `AWS`), sealed.
        token: SealedSecret,
        /// When it was fetched.
        issued_at: SystemTime,
        /// When it expires.
        expire_time: SystemTime,
    },
    /// Fetching an ECR token failed; the current token, if any, stays.
    EcrRefreshFailed {
        /// The registry.
        registry_id: String,
        /// The credential whose keys were used.
        credential_id: String,
        /// What went wrong, without secrets.
        message: String,
    },
    /// The credential was checked against the registry (a login).
    RegistryVerified {
        /// The registry.
        registry_id: String,
        /// The credential checked; a result for a replaced one is ignored.
        credential_id: String,
        /// Whether the registry accepted it.
        ok: bool,
        /// What happened, without secrets.
        message: String,
    },
    /// The settings were replaced.
    SettingsUpdated {
        /// `registry.default`; `None` is Docker Hub.
        default_registry: Option<Address>,
        /// `registry.whitelist`.
        whitelist: Whitelist,
    },
    /// A token was issued.
    TokenCreated {
        /// Its public id.
        token_id: String,
        /// Its role.
        role: Role,
        /// Its environment; `None` for admins.
        environment_id: Option<String>,
        /// What it is for.
        description: String,
        /// SHA-256 of the bearer secret.
        secret_sha256: [u8; 32],
    },
    /// A token was revoked.
    TokenRevoked {
        /// Its id.
        token_id: String,
    },
}

impl Event {
    /// Returns the event's type name as the log records it.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::EnvironmentCreated { .. } => "environment.created",
            Event::EnvironmentDeleted { .. } => "environment.deleted",
            Event::RegistryCreated { .. } => "registry.created",
            Event::CredentialReplaced { .. } => "registry.credential_replaced",
            Event::RegistryDeactivated { .. } => "registry.deactivated",
            Event::RegistryActivated { .. } => "registry.activated",
            Event::RegistryDeleted { .. } => "registry.deleted",
            Event::EcrTokenRefreshed { .. } => "registry.ecr_token_refreshed",
            Event::EcrRefreshFailed { .. } => "registry.ecr_refresh_failed",
            Event::RegistryVerified { .. } => "registry.verified",
            Event::SettingsUpdated { .. } => "settings.updated",
            Event::TokenCreated { .. } => "token.created",
            Event::TokenRevoked { .. } => "token.revoked",
        }
    }
}

/// A stream of the log: one per registry address, environment, settings and tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// An environment's own events.
    Environment(String),
    /// The events of one (environment, address) registry.
    Registry {
        /// The environment.
        environment_id: String,
        /// The canonical address.
        address: Address,
    },
    /// The settings.
    Settings,
    /// The tokens.
    Tokens,
}

impl Stream {
    /// Returns the stream's name in the log (its `Display`).
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// Parses a stream name as `Display` writes it; `None` for any other
    /// text.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "settings" => return Some(Stream::Settings),
            "tokens" => return Some(Stream::Tokens),
            _ => {}
        }
        if let Some(id) = name.strip_prefix("env/") {
            return (!id.is_empty() && !id.contains('/'))
                .then(|| Stream::Environment(id.to_owned()));
        }
        let (environment_id, text) = name.strip_prefix("reg/")?.split_once('/')?;
        let address = Address::parse(text).ok()?;
        // Only the canonical form is a stream name.
        (!environment_id.is_empty() && address.as_str() == text).then(|| Stream::Registry {
            environment_id: environment_id.to_owned(),
            address,
        })
    }

    /// Returns the environment the stream belongs to, if any.
    pub fn environment_id(&self) -> Option<&str> {
        match self {
            Stream::Environment(id) => Some(id),
            Stream::Registry { environment_id, .. } => Some(environment_id),
            Stream::Settings | Stream::Tokens => None,
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Environment(id) => write!(f, "env/{id}"),
            Stream::Registry {
                environment_id,
                address,
            } => write!(f, "reg/{environment_id}/{address}"),
            Stream::Settings => f.write_str("settings"),
            Stream::Tokens => f.write_str("tokens"),
        }
    }
}

/// An event with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Global position, from 1, contiguous.
    pub position: u64,
    /// The stream's name.
    pub stream: String,
    /// Version within the stream, from 1.
    pub stream_version: u64,
    /// When it was committed.
    pub time: SystemTime,
    /// Token id of the caller, or `system`.
    pub actor: String,
    /// The request id of the command, empty if none.
    pub request_id: String,
    /// The event.
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_parse_back_to_their_stream() {
        let streams = [
            Stream::Environment("e1".into()),
            Stream::Registry {
                environment_id: "e1".into(),
                address: Address::parse("reg.example.com:5000").unwrap(),
            },
            Stream::Registry {
                environment_id: "e1".into(),
                address: Address::parse("docker.io").unwrap(),
            },
            Stream::Registry {
                environment_id: "e1".into(),
                address: Address::parse("[::1]:5000").unwrap(),
            },
            Stream::Settings,
            Stream::Tokens,
        ];
        for stream in streams {
            assert_eq!(
                Stream::parse(&stream.to_string()),
                Some(stream.clone()),
                "{stream}"
            );
        }
        for other in [
            "",
            "env/",
            "reg/e1",
            "reg//a.io",
            "reg/e1/HTTP://a.io",
            "reg/e1/Docker.io",
            "x",
        ] {
            assert_eq!(Stream::parse(other), None, "{other}");
        }
    }
}
