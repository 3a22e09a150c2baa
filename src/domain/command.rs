//! Commands: what a caller asks for, with the ids the app chose for anything
//! the command may create. `decide` turns them into events or refuses them.

use std::time::SystemTime;

use secrecy::SecretString;

use super::address::RegistryKind;
use super::credential::{NewCredential, NewEcrKeys};
use super::event::{Orchestration, Role};

/// The result of logging in to a registry with a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whether the registry accepted it.
    pub ok: bool,
    /// What happened, without secrets.
    pub message: String,
}

/// A request to change state.
#[derive(Debug, Clone)]
pub enum Command {
    /// Create an environment (admin).
    CreateEnvironment {
        /// Id for the new environment.
        environment_id: String,
        /// Display name.
        name: String,
        /// Orchestration type; `None` when the caller left it unspecified.
        orchestration: Option<Orchestration>,
    },
    /// Delete an environment and all its registries (admin).
    DeleteEnvironment {
        /// The environment.
        environment_id: String,
    },
    /// Add a credential for an address (R7).
    CreateRegistry {
        /// The environment.
        environment_id: String,
        /// Id for the registry, used only if the address has none yet.
        registry_id: String,
        /// Id for the new credential.
        credential_id: String,
        /// The kind; `None` when unspecified.
        kind: Option<RegistryKind>,
        /// The address as the caller typed it.
        address: String,
        /// The credential.
        credential: NewCredential,
        /// Plain HTTP or unverified TLS.
        insecure: bool,
        /// CA bundle, empty for none.
        ca_certificate_pem: String,
        /// The result of logging in with the credential, recorded with it.
        verified: Option<Verified>,
    },
    /// Edit a registry's credential and trust settings (R8).
    UpdateRegistry {
        /// The registry.
        registry_id: String,
        /// Id for the new credential.
        credential_id: String,
        /// Must be empty or the current address.
        address: String,
        /// New email; empty keeps the current one.
        email: String,
        /// New username; empty keeps the current one.
        username: String,
        /// The password, required again.
        password: Option<SecretString>,
        /// New insecure flag; `None` keeps it.
        insecure: Option<bool>,
        /// New CA bundle; `None` keeps it, empty removes it.
        ca_certificate_pem: Option<String>,
        /// Expiry of the new credential.
        expire_time: Option<SystemTime>,
        /// New ECR access keys, for ECR registries whose token registrar fetches.
        ecr: Option<NewEcrKeys>,
        /// The result of logging in with the credential, recorded with it.
        verified: Option<Verified>,
    },
    /// Record the result of checking a registry's current credential.
    RecordVerification {
        /// The registry.
        registry_id: String,
        /// The credential checked; a replaced one is refused.
        credential_id: String,
        /// The result.
        verified: Verified,
    },
    /// Record a fetched ECR token (the refresher, as the system).
    RecordEcrToken {
        /// The registry.
        registry_id: String,
        /// The credential whose keys fetched it; a stale one is refused.
        credential_id: String,
        /// The token.
        token: SecretString,
        /// When it was fetched.
        issued_at: SystemTime,
        /// When it expires.
        expire_time: SystemTime,
    },
    /// Record a failed ECR token refresh (the refresher, as the system).
    RecordEcrRefreshFailure {
        /// The registry.
        registry_id: String,
        /// The credential whose keys were used.
        credential_id: String,
        /// What went wrong, without secrets.
        message: String,
    },
    /// Activate an inactive registry (R10).
    ActivateRegistry {
        /// The registry.
        registry_id: String,
    },
    /// Deactivate an active registry (R10).
    DeactivateRegistry {
        /// The registry.
        registry_id: String,
    },
    /// Delete a registry and destroy its credential (R10).
    DeleteRegistry {
        /// The registry.
        registry_id: String,
    },
    /// Change settings (admin); `None` keeps a setting.
    UpdateSettings {
        /// `registry.default`.
        default_registry: Option<String>,
        /// `registry.whitelist`.
        whitelist: Option<Vec<String>>,
    },
    /// Issue a token (admin).
    CreateToken {
        /// Public id for the token.
        token_id: String,
        /// Its role; `None` when unspecified.
        role: Option<Role>,
        /// Its environment; empty for admins.
        environment_id: String,
        /// What it is for.
        description: String,
        /// SHA-256 of the secret the app generated.
        secret_sha256: [u8; 32],
    },
    /// Revoke a token (admin).
    RevokeToken {
        /// The token.
        token_id: String,
    },
}

impl Command {
    /// Returns the command's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateEnvironment { .. } => "create_environment",
            Command::DeleteEnvironment { .. } => "delete_environment",
            Command::CreateRegistry { .. } => "create_registry",
            Command::UpdateRegistry { .. } => "update_registry",
            Command::RecordEcrToken { .. } => "record_ecr_token",
            Command::RecordEcrRefreshFailure { .. } => "record_ecr_refresh_failure",
            Command::RecordVerification { .. } => "record_verification",
            Command::ActivateRegistry { .. } => "activate_registry",
            Command::DeactivateRegistry { .. } => "deactivate_registry",
            Command::DeleteRegistry { .. } => "delete_registry",
            Command::UpdateSettings { .. } => "update_settings",
            Command::CreateToken { .. } => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
        }
    }
}
