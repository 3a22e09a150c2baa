//! Conversions between the API's generated types and the domain's, done only
//! here: unknown enum values are refused, secrets never leave in a read.

use secrecy::SecretString;
use tonic::Status;

use super::error::invalid;
use crate::domain::address::RegistryKind;
use crate::domain::command::Command;
use crate::domain::credential::{NewCredential, NewEcrKeys};
use crate::domain::event::{Orchestration, Role};
use crate::domain::settings::Settings;
use crate::domain::state::{Environment, Registry, RegistryState, Token};
use crate::pb;
use crate::timestamp::{system_to_timestamp, timestamp_to_system};

/// Reads an orchestration; unspecified is `None` for the domain to refuse.
pub(crate) fn orchestration(v: i32) -> Result<Option<Orchestration>, Status> {
    match pb::Orchestration::try_from(v) {
        Ok(pb::Orchestration::Unspecified) => Ok(None),
        Ok(pb::Orchestration::Cattle) => Ok(Some(Orchestration::Cattle)),
        Ok(pb::Orchestration::Kubernetes) => Ok(Some(Orchestration::Kubernetes)),
        Err(_) => Err(unknown("orchestration", v)),
    }
}

/// Reads a registry kind; unspecified is `None` for the domain to refuse.
pub(crate) fn kind(v: i32) -> Result<Option<RegistryKind>, Status> {
    Ok(match pb::RegistryKind::try_from(v) {
        Ok(pb::RegistryKind::Unspecified) => None,
        Ok(pb::RegistryKind::DockerHub) => Some(RegistryKind::DockerHub),
        Ok(pb::RegistryKind::Quay) => Some(RegistryKind::Quay),
        Ok(pb::RegistryKind::Custom) => Some(RegistryKind::Custom),
        Ok(pb::RegistryKind::Ecr) => Some(RegistryKind::Ecr),
        Ok(pb::RegistryKind::Gcr) => Some(RegistryKind::Gcr),
        Err(_) => return Err(unknown("kind", v)),
    })
}

/// Reads a role; unspecified is `None` for the domain to refuse.
pub(crate) fn role(v: i32) -> Result<Option<Role>, Status> {
    Ok(match pb::Role::try_from(v) {
        Ok(pb::Role::Unspecified) => None,
        Ok(pb::Role::Admin) => Some(Role::Admin),
        Ok(pb::Role::Member) => Some(Role::Member),
        Ok(pb::Role::Agent) => Some(Role::Agent),
        Err(_) => return Err(unknown("role", v)),
    })
}

fn unknown(field: &str, v: i32) -> Status {
    invalid(field, &format!("unknown enum value {v}"))
}

/// The command of a CreateRegistry request, with the ids the server chose.
/// An unknown `kind` is refused here; the domain checks the rest.
pub(crate) fn create_registry(
    r: &pb::CreateRegistryRequest,
    registry_id: String,
    credential_id: String,
) -> Result<Command, Status> {
    Ok(Command::CreateRegistry {
        environment_id: r.environment_id.clone(),
        registry_id,
        credential_id,
        kind: kind(r.kind)?,
        address: r.address.clone(),
        credential: NewCredential {
            email: r.email.clone(),
            username: r.username.clone(),
            password: SecretString::from(r.password.clone()),
            expire_time: r.expire_time.as_ref().map(timestamp_to_system),
            ecr: ecr_keys(&r.ecr),
        },
        insecure: r.insecure,
        ca_certificate_pem: r.ca_certificate_pem.clone(),
        verified: None,
    })
}

/// The command of an UpdateRegistry request, with the id of the credential
/// it records (an edit always records a new one, R8).
pub(crate) fn update_registry(r: &pb::UpdateRegistryRequest, credential_id: String) -> Command {
    Command::UpdateRegistry {
        registry_id: r.id.clone(),
        credential_id,
        address: r.address.clone(),
        email: r.email.clone(),
        username: r.username.clone(),
        password: Some(SecretString::from(r.password.clone())),
        insecure: r.insecure,
        ca_certificate_pem: r.ca_certificate_pem.clone(),
        expire_time: r.expire_time.as_ref().map(timestamp_to_system),
        ecr: ecr_keys(&r.ecr),
        verified: None,
    }
}

fn ecr_keys(ecr: &Option<pb::EcrCredentials>) -> Option<NewEcrKeys> {
    ecr.as_ref().map(|e| NewEcrKeys {
        access_key_id: e.access_key_id.clone(),
        secret_access_key: SecretString::from(e.secret_access_key.clone()),
    })
}

/// Which settings an UpdateSettings request changes: those its update mask
/// names, both when it names none. An unknown path is refused.
pub(crate) fn settings_mask(r: &pb::UpdateSettingsRequest) -> Result<(bool, bool), Status> {
    let paths = r
        .update_mask
        .as_ref()
        .map(|m| m.paths.as_slice())
        .unwrap_or_default();
    let (mut default, mut whitelist) = (paths.is_empty(), paths.is_empty());
    for path in paths {
        match path.as_str() {
            "default_registry" => default = true,
            "whitelist" => whitelist = true,
            other => {
                return Err(invalid(
                    "update_mask",
                    &format!("unknown path {other:?}: use default_registry or whitelist"),
                ))
            }
        }
    }
    Ok((default, whitelist))
}

/// The command of an UpdateSettings request (see [`settings_mask`]).
pub(crate) fn update_settings(r: &pb::UpdateSettingsRequest) -> Result<Command, Status> {
    let (default, whitelist) = settings_mask(r)?;
    let settings = r.settings.clone().unwrap_or_default();
    Ok(Command::UpdateSettings {
        default_registry: default.then_some(settings.default_registry),
        whitelist: whitelist.then_some(settings.whitelist),
    })
}

/// Shows an environment.
pub(crate) fn environment(e: &Environment) -> pb::Environment {
    pb::Environment {
        id: e.id.clone(),
        name: e.name.clone(),
        orchestration: match e.orchestration {
            Orchestration::Cattle => pb::Orchestration::Cattle,
            Orchestration::Kubernetes => pb::Orchestration::Kubernetes,
        } as i32,
        create_time: Some(system_to_timestamp(e.create_time)),
    }
}

/// Shows a registry, without its password (R9).
pub(crate) fn registry(r: &Registry) -> pb::Registry {
    pb::Registry {
        id: r.id.clone(),
        environment_id: r.environment_id.clone(),
        kind: match r.kind {
            RegistryKind::DockerHub => pb::RegistryKind::DockerHub,
            RegistryKind::Quay => pb::RegistryKind::Quay,
            RegistryKind::Custom => pb::RegistryKind::Custom,
            RegistryKind::Ecr => pb::RegistryKind::Ecr,
            RegistryKind::Gcr => pb::RegistryKind::Gcr,
        } as i32,
        address: r.address.as_str().to_owned(),
        state: match r.state {
            RegistryState::Active => pb::RegistryState::Active,
            RegistryState::Inactive => pb::RegistryState::Inactive,
        } as i32,
        email: r.credential.email.clone(),
        username: r.credential.username.clone(),
        insecure: r.insecure,
        ca_certificate_pem: r.ca_certificate_pem.clone(),
        credential_id: r.credential.credential_id.clone(),
        create_time: Some(system_to_timestamp(r.create_time)),
        update_time: Some(system_to_timestamp(r.update_time)),
        expire_time: r.credential.expire_time.map(system_to_timestamp),
        ecr_access_key_id: r
            .credential
            .ecr
            .as_ref()
            .map(|k| k.access_key_id.clone())
            .unwrap_or_default(),
        last_refresh_error: r.last_refresh_error.clone().unwrap_or_default(),
        last_verification: r.last_verification.as_ref().map(|v| pb::Verification {
            time: Some(system_to_timestamp(v.time)),
            ok: v.ok,
            message: v.message.clone(),
        }),
    }
}

/// Shows the settings.
pub(crate) fn settings(s: &Settings) -> pb::Settings {
    pb::Settings {
        default_registry: s
            .default_registry
            .as_ref()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        whitelist: s.whitelist.to_strings(),
    }
}

/// Shows a token, without its secret.
pub(crate) fn token(t: &Token) -> pb::Token {
    pb::Token {
        token_id: t.id.clone(),
        role: match t.role {
            Role::Admin => pb::Role::Admin,
            Role::Member => pb::Role::Member,
            Role::Agent => pb::Role::Agent,
        } as i32,
        environment_id: t.environment_id.clone().unwrap_or_default(),
        description: t.description.clone(),
        create_time: Some(system_to_timestamp(t.create_time)),
    }
}
