//! Conversions between the API's generated types and the domain's, done only
//! here: unknown enum values are refused, secrets never leave in a read.

use tonic::Status;

use super::error::invalid;
use crate::domain::address::RegistryKind;
use crate::domain::event::{Orchestration, Role};
use crate::domain::settings::Settings;
use crate::domain::state::{Environment, Registry, RegistryState, Token};
use crate::pb;
use crate::store::payload::system_to_timestamp;

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
