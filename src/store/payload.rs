//! Event payloads: domain events to and from their protobuf messages, keyed by
//! event type and schema version. An upcaster for an old version goes here.

use std::time::UNIX_EPOCH;

use prost::Message;

use super::{Envelope, Error, NewEvent, Result};
use crate::domain::address::{Address, RegistryKind};
use crate::domain::credential::{CredentialRecord, EcrKeysRecord, SealedSecret};
use crate::domain::event::{CredentialCause, Event, Orchestration, Recorded, Role};
use crate::domain::whitelist::Whitelist;
use crate::event_pb as pb;

/// The schema version every event is written with today.
pub const SCHEMA_VERSION: u32 = 1;

/// Encodes a domain event as the payload of a new log record.
pub fn encode(event: &Event) -> NewEvent {
    let payload = match event {
        Event::EnvironmentCreated {
            environment_id,
            name,
            orchestration,
        } => pb::EnvironmentCreated {
            environment_id: environment_id.clone(),
            name: name.clone(),
            orchestration: orchestration_to_pb(*orchestration) as i32,
        }
        .encode_to_vec(),
        Event::EnvironmentDeleted { environment_id } => pb::EnvironmentDeleted {
            environment_id: environment_id.clone(),
        }
        .encode_to_vec(),
        Event::RegistryCreated {
            registry_id,
            environment_id,
            kind,
            address,
            insecure,
            ca_certificate_pem,
            credential,
        } => pb::RegistryCreated {
            registry_id: registry_id.clone(),
            environment_id: environment_id.clone(),
            kind: kind_to_pb(*kind) as i32,
            address: address.as_str().to_owned(),
            insecure: *insecure,
            ca_certificate_pem: ca_certificate_pem.clone(),
            credential: Some(credential_to_pb(credential)),
        }
        .encode_to_vec(),
        Event::CredentialReplaced {
            registry_id,
            credential,
            previous_credential_id,
            insecure,
            ca_certificate_pem,
            cause,
        } => pb::CredentialReplaced {
            registry_id: registry_id.clone(),
            credential: Some(credential_to_pb(credential)),
            previous_credential_id: previous_credential_id.clone(),
            insecure: *insecure,
            ca_certificate_pem: ca_certificate_pem.clone(),
            cause: match cause {
                CredentialCause::Added => pb::CredentialCause::Added,
                CredentialCause::Edited => pb::CredentialCause::Edited,
            } as i32,
        }
        .encode_to_vec(),
        Event::RegistryDeactivated { registry_id } => pb::RegistryDeactivated {
            registry_id: registry_id.clone(),
        }
        .encode_to_vec(),
        Event::RegistryActivated { registry_id } => pb::RegistryActivated {
            registry_id: registry_id.clone(),
        }
        .encode_to_vec(),
        Event::RegistryDeleted {
            registry_id,
            credential_id,
        } => pb::RegistryDeleted {
            registry_id: registry_id.clone(),
            credential_id: credential_id.clone(),
        }
        .encode_to_vec(),
        Event::EcrTokenRefreshed {
            registry_id,
            credential_id,
            token,
            issued_at,
            expire_time,
        } => pb::EcrTokenRefreshed {
            registry_id: registry_id.clone(),
            credential_id: credential_id.clone(),
            token: Some(sealed_to_pb(token)),
            issued_at: Some(system_to_timestamp(*issued_at)),
            expire_time: Some(system_to_timestamp(*expire_time)),
        }
        .encode_to_vec(),
        Event::EcrRefreshFailed {
            registry_id,
            credential_id,
            message,
        } => pb::EcrRefreshFailed {
            registry_id: registry_id.clone(),
            credential_id: credential_id.clone(),
            message: message.clone(),
        }
        .encode_to_vec(),
        Event::RegistryVerified {
            registry_id,
            credential_id,
            ok,
            message,
        } => pb::RegistryVerified {
            registry_id: registry_id.clone(),
            credential_id: credential_id.clone(),
            ok: *ok,
            message: message.clone(),
        }
        .encode_to_vec(),
        Event::SettingsUpdated {
            default_registry,
            whitelist,
        } => pb::SettingsUpdated {
            default_registry: default_registry
                .as_ref()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
            whitelist: whitelist.to_strings(),
        }
        .encode_to_vec(),
        Event::TokenCreated {
            token_id,
            role,
            environment_id,
            description,
            secret_sha256,
        } => pb::TokenCreated {
            token_id: token_id.clone(),
            role: match role {
                Role::Admin => pb::Role::Admin,
                Role::Member => pb::Role::Member,
                Role::Agent => pb::Role::Agent,
            } as i32,
            environment_id: environment_id.clone().unwrap_or_default(),
            description: description.clone(),
            secret_sha256: secret_sha256.to_vec(),
        }
        .encode_to_vec(),
        Event::TokenRevoked { token_id } => pb::TokenRevoked {
            token_id: token_id.clone(),
        }
        .encode_to_vec(),
    };
    NewEvent {
        event_type: event.event_type().to_owned(),
        schema_version: SCHEMA_VERSION,
        payload,
    }
}

/// Decodes a verified record into a recorded domain event.
pub fn decode(envelope: &Envelope) -> Result<Recorded> {
    let corrupt = |reason: String| Error::Corrupt {
        position: envelope.position,
        reason,
    };
    if envelope.schema_version != SCHEMA_VERSION {
        return Err(corrupt(format!(
            "event {} has schema version {}, which this build does not know: upgrade registrar",
            envelope.event_type, envelope.schema_version
        )));
    }
    let event = decode_v1(&envelope.event_type, &envelope.payload).map_err(corrupt)?;
    let time = envelope
        .time
        .as_ref()
        .map(timestamp_to_system)
        .unwrap_or(UNIX_EPOCH);
    Ok(Recorded {
        position: envelope.position,
        stream: envelope.stream.clone(),
        stream_version: envelope.stream_version,
        time,
        actor: envelope.actor.clone(),
        request_id: envelope.request_id.clone(),
        event,
    })
}

fn decode_v1(event_type: &str, payload: &[u8]) -> std::result::Result<Event, String> {
    fn msg<M: Message + Default>(payload: &[u8]) -> std::result::Result<M, String> {
        M::decode(payload).map_err(|e| format!("undecodable payload: {e}"))
    }
    Ok(match event_type {
        "environment.created" => {
            let m: pb::EnvironmentCreated = msg(payload)?;
            Event::EnvironmentCreated {
                orchestration: orchestration_from_pb(m.orchestration)?,
                environment_id: m.environment_id,
                name: m.name,
            }
        }
        "environment.deleted" => {
            let m: pb::EnvironmentDeleted = msg(payload)?;
            Event::EnvironmentDeleted {
                environment_id: m.environment_id,
            }
        }
        "registry.created" => {
            let m: pb::RegistryCreated = msg(payload)?;
            Event::RegistryCreated {
                kind: kind_from_pb(m.kind)?,
                address: Address::from_canonical_unchecked(m.address),
                credential: credential_from_pb(m.credential)?,
                registry_id: m.registry_id,
                environment_id: m.environment_id,
                insecure: m.insecure,
                ca_certificate_pem: m.ca_certificate_pem,
            }
        }
        "registry.credential_replaced" => {
            let m: pb::CredentialReplaced = msg(payload)?;
            Event::CredentialReplaced {
                credential: credential_from_pb(m.credential)?,
                cause: match pb::CredentialCause::try_from(m.cause) {
                    Ok(pb::CredentialCause::Added) => CredentialCause::Added,
                    Ok(pb::CredentialCause::Edited) => CredentialCause::Edited,
                    _ => return Err(format!("unknown credential cause {}", m.cause)),
                },
                registry_id: m.registry_id,
                previous_credential_id: m.previous_credential_id,
                insecure: m.insecure,
                ca_certificate_pem: m.ca_certificate_pem,
            }
        }
        "registry.deactivated" => {
            let m: pb::RegistryDeactivated = msg(payload)?;
            Event::RegistryDeactivated {
                registry_id: m.registry_id,
            }
        }
        "registry.activated" => {
            let m: pb::RegistryActivated = msg(payload)?;
            Event::RegistryActivated {
                registry_id: m.registry_id,
            }
        }
        "registry.deleted" => {
            let m: pb::RegistryDeleted = msg(payload)?;
            Event::RegistryDeleted {
                registry_id: m.registry_id,
                credential_id: m.credential_id,
            }
        }
        "registry.ecr_token_refreshed" => {
            let m: pb::EcrTokenRefreshed = msg(payload)?;
            Event::EcrTokenRefreshed {
                token: sealed_from_pb(m.token)?,
                issued_at: m
                    .issued_at
                    .as_ref()
                    .map(timestamp_to_system)
                    .ok_or("ECR token without issue time")?,
                expire_time: m
                    .expire_time
                    .as_ref()
                    .map(timestamp_to_system)
                    .ok_or("ECR token without expiry")?,
                registry_id: m.registry_id,
                credential_id: m.credential_id,
            }
        }
        "registry.ecr_refresh_failed" => {
            let m: pb::EcrRefreshFailed = msg(payload)?;
            Event::EcrRefreshFailed {
                registry_id: m.registry_id,
                credential_id: m.credential_id,
                message: m.message,
            }
        }
        "registry.verified" => {
            let m: pb::RegistryVerified = msg(payload)?;
            Event::RegistryVerified {
                registry_id: m.registry_id,
                credential_id: m.credential_id,
                ok: m.ok,
                message: m.message,
            }
        }
        "settings.updated" => {
            let m: pb::SettingsUpdated = msg(payload)?;
            Event::SettingsUpdated {
                default_registry: (!m.default_registry.is_empty())
                    .then(|| Address::from_canonical_unchecked(m.default_registry)),
                whitelist: Whitelist::parse(&m.whitelist)
                    .map_err(|e| format!("stored whitelist no longer parses: {e}"))?,
            }
        }
        "token.created" => {
            let m: pb::TokenCreated = msg(payload)?;
            Event::TokenCreated {
                role: match pb::Role::try_from(m.role) {
                    Ok(pb::Role::Admin) => Role::Admin,
                    Ok(pb::Role::Member) => Role::Member,
                    Ok(pb::Role::Agent) => Role::Agent,
                    _ => return Err(format!("unknown role {}", m.role)),
                },
                secret_sha256: m
                    .secret_sha256
                    .as_slice()
                    .try_into()
                    .map_err(|_| "token hash is not 32 bytes".to_owned())?,
                environment_id: (!m.environment_id.is_empty()).then_some(m.environment_id),
                token_id: m.token_id,
                description: m.description,
            }
        }
        "token.revoked" => {
            let m: pb::TokenRevoked = msg(payload)?;
            Event::TokenRevoked {
                token_id: m.token_id,
            }
        }
        other => return Err(format!("unknown event type {other:?}")),
    })
}

fn sealed_to_pb(s: &SealedSecret) -> pb::SealedSecret {
    pb::SealedSecret {
        nonce: s.nonce.clone(),
        ciphertext: s.ciphertext.clone(),
    }
}

fn sealed_from_pb(s: Option<pb::SealedSecret>) -> std::result::Result<SealedSecret, String> {
    let s = s.ok_or("a sealed secret is missing")?;
    Ok(SealedSecret {
        nonce: s.nonce,
        ciphertext: s.ciphertext,
    })
}

fn credential_to_pb(c: &CredentialRecord) -> pb::Credential {
    pb::Credential {
        credential_id: c.credential_id.clone(),
        email: c.email.clone(),
        username: c.username.clone(),
        password: Some(sealed_to_pb(&c.password)),
        expire_time: c.expire_time.map(system_to_timestamp),
        ecr: c.ecr.as_ref().map(|k| pb::EcrKeys {
            access_key_id: k.access_key_id.clone(),
            secret_access_key: Some(sealed_to_pb(&k.secret_access_key)),
        }),
    }
}

fn credential_from_pb(c: Option<pb::Credential>) -> std::result::Result<CredentialRecord, String> {
    let c = c.ok_or("registry event without a credential")?;
    let ecr = match c.ecr {
        Some(k) => Some(Box::new(EcrKeysRecord {
            access_key_id: k.access_key_id,
            secret_access_key: sealed_from_pb(k.secret_access_key)?,
        })),
        None => None,
    };
    Ok(CredentialRecord {
        credential_id: c.credential_id,
        email: c.email,
        username: c.username,
        password: sealed_from_pb(c.password)?,
        expire_time: c.expire_time.as_ref().map(timestamp_to_system),
        ecr,
    })
}

fn orchestration_to_pb(o: Orchestration) -> pb::Orchestration {
    match o {
        Orchestration::Cattle => pb::Orchestration::Cattle,
        Orchestration::Kubernetes => pb::Orchestration::Kubernetes,
    }
}

fn orchestration_from_pb(v: i32) -> std::result::Result<Orchestration, String> {
    match pb::Orchestration::try_from(v) {
        Ok(pb::Orchestration::Cattle) => Ok(Orchestration::Cattle),
        Ok(pb::Orchestration::Kubernetes) => Ok(Orchestration::Kubernetes),
        _ => Err(format!("unknown orchestration {v}")),
    }
}

fn kind_to_pb(k: RegistryKind) -> pb::RegistryKind {
    match k {
        RegistryKind::DockerHub => pb::RegistryKind::DockerHub,
        RegistryKind::Quay => pb::RegistryKind::Quay,
        RegistryKind::Custom => pb::RegistryKind::Custom,
        RegistryKind::Ecr => pb::RegistryKind::Ecr,
        RegistryKind::Gcr => pb::RegistryKind::Gcr,
    }
}

fn kind_from_pb(v: i32) -> std::result::Result<RegistryKind, String> {
    Ok(match pb::RegistryKind::try_from(v) {
        Ok(pb::RegistryKind::DockerHub) => RegistryKind::DockerHub,
        Ok(pb::RegistryKind::Quay) => RegistryKind::Quay,
        Ok(pb::RegistryKind::Custom) => RegistryKind::Custom,
        Ok(pb::RegistryKind::Ecr) => RegistryKind::Ecr,
        Ok(pb::RegistryKind::Gcr) => RegistryKind::Gcr,
        _ => return Err(format!("unknown registry kind {v}")),
    })
}

pub use crate::timestamp::{system_to_timestamp, timestamp_to_system};

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
