//! `decide`: checks a command against the current state and the caller, and
//! returns the events that record it, per stream with expected versions.
//! Pure: secrets are sealed through the `Sealer` the caller passes in.
//! About 600 lines: one match over every command, so each rule has one home.

use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

use super::access::Principal;
use super::address::Address;
use super::credential::{
    CredentialRecord, EcrKeysRecord, NewCredential, SealedSecret, Sealer, SecretContext,
};
use super::error::{Error, Result};
use super::event::{CredentialCause, Event, Role, Stream};
use super::settings::Settings;
use super::state::{Registry, RegistryState, State};
use super::trust::check_ca_bundle;

/// Longest environment name and token description.
pub const MAX_LABEL_LEN: usize = 128;

/// Events for one stream, with the version the stream must be at. An append
/// without events only checks the version (a guard against concurrent change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The stream's name.
    pub stream: String,
    /// The version the stream must have now.
    pub expected_version: u64,
    /// The events to record.
    pub events: Vec<Event>,
}

/// What a command produced, and what its answer is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The appends, committed atomically.
    pub appends: Vec<Append>,
    /// The object the answer shows.
    pub outcome: Outcome,
}

/// The object a command's answer shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An environment.
    Environment(String),
    /// A registry.
    Registry(String),
    /// The settings.
    Settings,
    /// A token.
    Token(String),
    /// Nothing: the object is gone.
    Removed,
}

/// Checks the caller's role, and the environment a command names directly,
/// without looking at the state: what a replayed request (answered from the
/// log, not decided again) must pass exactly as its first call did. Objects
/// named by id are checked against the answer's environment by the caller.
pub fn authorize(who: &Principal, command: &Command) -> Result<()> {
    match command {
        Command::CreateEnvironment { .. } => who.check_admin("creating environments"),
        Command::DeleteEnvironment { .. } => who.check_admin("deleting environments"),
        Command::CreateRegistry { environment_id, .. } => {
            who.check_manage(environment_id, "environment", environment_id)
        }
        Command::UpdateRegistry { registry_id, .. }
        | Command::ActivateRegistry { registry_id }
        | Command::DeactivateRegistry { registry_id }
        | Command::DeleteRegistry { registry_id }
        | Command::RecordVerification { registry_id, .. } => match who.role {
            Role::Admin | Role::Member => Ok(()),
            Role::Agent => Err(Error::PermissionDenied(format!(
                "agent tokens may not change registries (registry {registry_id})"
            ))),
        },
        Command::RecordEcrToken { .. } | Command::RecordEcrRefreshFailure { .. } => {
            who.check_admin("recording ECR tokens")
        }
        Command::UpdateSettings { .. } => who.check_admin("settings"),
        Command::CreateToken { .. } | Command::RevokeToken { .. } => who.check_admin("tokens"),
    }
}

/// Decides a command.
pub fn decide(
    state: &State,
    who: &Principal,
    command: Command,
    now: SystemTime,
    sealer: &mut dyn Sealer,
) -> Result<Decision> {
    match command {
        Command::CreateEnvironment {
            environment_id,
            name,
            orchestration,
        } => {
            who.check_admin("creating environments")?;
            check_label("name", &name, true)?;
            let orchestration = orchestration
                .ok_or_else(|| Error::invalid("orchestration", "must be CATTLE or KUBERNETES"))?;
            let stream = Stream::Environment(environment_id.clone()).name();
            Ok(Decision {
                appends: vec![Append {
                    expected_version: state.stream_version(&stream),
                    stream,
                    events: vec![Event::EnvironmentCreated {
                        environment_id: environment_id.clone(),
                        name,
                        orchestration,
                    }],
                }],
                outcome: Outcome::Environment(environment_id),
            })
        }
        Command::DeleteEnvironment { environment_id } => {
            who.check_admin("deleting environments")?;
            if state.environment(&environment_id).is_none() {
                return Err(not_found("environment", &environment_id));
            }
            let mut appends: Vec<Append> = state
                .registries_in(&environment_id, "")
                .map(|reg| registry_append(state, reg, deleted(reg)))
                .collect();
            let stream = Stream::Environment(environment_id.clone()).name();
            appends.push(Append {
                expected_version: state.stream_version(&stream),
                stream,
                events: vec![Event::EnvironmentDeleted { environment_id }],
            });
            Ok(Decision {
                appends,
                outcome: Outcome::Removed,
            })
        }
        Command::CreateRegistry {
            environment_id,
            registry_id,
            credential_id,
            kind,
            address,
            credential,
            insecure,
            ca_certificate_pem,
            verified,
        } => {
            if state.environment(&environment_id).is_none() || !who.sees(&environment_id) {
                return Err(not_found("environment", &environment_id));
            }
            who.check_manage(&environment_id, "environment", &environment_id)?;
            let kind = kind.ok_or_else(|| {
                Error::invalid("kind", "must be DOCKER_HUB, QUAY, CUSTOM, ECR or GCR")
            })?;
            let address = Address::for_kind(kind, &address)
                .map_err(|e| Error::invalid("address", e.to_string()))?;
            let existing = state.registry_at(&environment_id, &address);
            // R7: the credential joins the registry already at the address, so
            // it must suit that registry's kind, whichever kind the request named.
            let credential = credential.validate(existing.map_or(kind, |r| r.kind), now)?;
            let ca_certificate_pem = check_ca_bundle(&ca_certificate_pem)?;
            let stream = Stream::Registry {
                environment_id: environment_id.clone(),
                address: address.clone(),
            }
            .name();
            let version = state.stream_version(&stream) + 1;
            let id = existing.map_or(registry_id, |r| r.id.clone());
            let sealed = seal(
                sealer,
                &environment_id,
                &id,
                &credential_id,
                version,
                &credential,
            );
            let event = match existing {
                // R7: the registry keeps its id and state; the newest credential wins.
                Some(reg) => Event::CredentialReplaced {
                    registry_id: id.clone(),
                    credential: sealed,
                    previous_credential_id: reg.credential.credential_id.clone(),
                    insecure,
                    ca_certificate_pem,
                    cause: CredentialCause::Added,
                },
                None => Event::RegistryCreated {
                    registry_id: id.clone(),
                    environment_id: environment_id.clone(),
                    kind,
                    address,
                    insecure,
                    ca_certificate_pem,
                    credential: sealed,
                },
            };
            Ok(Decision {
                appends: vec![
                    env_guard(state, &environment_id),
                    Append {
                        stream,
                        expected_version: version - 1,
                        events: with_verification(event, &id, &credential_id, verified),
                    },
                ],
                outcome: Outcome::Registry(id),
            })
        }
        Command::UpdateRegistry {
            registry_id,
            credential_id,
            address,
            email,
            username,
            password,
            insecure,
            ca_certificate_pem,
            expire_time,
            ecr,
            verified,
        } => {
            let reg = managed_registry(state, who, &registry_id)?;
            if !address.trim().is_empty() {
                let same = Address::for_kind(reg.kind, &address).is_ok_and(|a| a == reg.address);
                if !same {
                    return Err(Error::invalid(
                        "address",
                        format!(
                            "the address of a registry cannot be changed (it is {}); add a new registry instead",
                            reg.address
                        ),
                    ));
                }
            }
            let password = password.filter(|p| !p.expose_secret().is_empty());
            if reg.credential.ecr.is_some() && ecr.is_none() && password.is_some() {
                // A password here would replace the IAM keys and be handed to
                // every agent as is: an ECR secret access key typed at the
                // password prompt must never end up there.
                return Err(Error::invalid(
                    "ecr",
                    "this registry fetches its tokens with IAM access keys: give new keys as ecr.access_key_id and ecr.secret_access_key, not a password",
                ));
            }
            let password = match (password, &ecr) {
                (Some(p), _) => p,
                (None, Some(_)) => SecretString::from(String::new()),
                (None, None) if reg.credential.ecr.is_some() => {
                    return Err(Error::invalid(
                        "ecr.secret_access_key",
                        "the access keys must be re-entered",
                    ))
                }
                (None, None) => {
                    return Err(Error::invalid("password", "password must be re-entered"))
                }
            };
            let username = match (&ecr, username.is_empty()) {
                // The current username (AWS) carries over to new keys.
                (Some(_), true) => String::new(),
                _ => or_current(username, &reg.credential.username),
            };
            let credential = NewCredential {
                email: or_current(email, &reg.credential.email),
                username,
                password,
                expire_time,
                ecr,
            }
            .validate(reg.kind, now)?;
            let ca_certificate_pem = match ca_certificate_pem {
                Some(pem) => check_ca_bundle(&pem)?,
                None => reg.ca_certificate_pem.clone(),
            };
            let version = reg_version(state, reg) + 1;
            let sealed = seal(
                sealer,
                &reg.environment_id,
                &reg.id,
                &credential_id,
                version,
                &credential,
            );
            let event = Event::CredentialReplaced {
                registry_id: reg.id.clone(),
                credential: sealed,
                previous_credential_id: reg.credential.credential_id.clone(),
                insecure: insecure.unwrap_or(reg.insecure),
                ca_certificate_pem,
                cause: CredentialCause::Edited,
            };
            let mut append = registry_append(state, reg, event);
            append.events =
                with_verification(append.events.remove(0), &reg.id, &credential_id, verified);
            Ok(Decision {
                appends: vec![append],
                outcome: Outcome::Registry(reg.id.clone()),
            })
        }
        Command::RecordEcrToken {
            registry_id,
            credential_id,
            token,
            issued_at,
            expire_time,
        } => {
            who.check_admin("recording ECR tokens")?;
            let reg = current_ecr_registry(state, &registry_id, &credential_id)?;
            let version = reg_version(state, reg) + 1;
            let sealed = sealer.seal(
                SecretContext {
                    environment_id: &reg.environment_id,
                    registry_id: &reg.id,
                    credential_id: &credential_id,
                    version,
                    field: "password",
                },
                &token,
            );
            let event = Event::EcrTokenRefreshed {
                registry_id: reg.id.clone(),
                credential_id,
                token: sealed,
                issued_at,
                expire_time,
            };
            Ok(Decision {
                appends: vec![registry_append(state, reg, event)],
                outcome: Outcome::Registry(registry_id),
            })
        }
        Command::RecordEcrRefreshFailure {
            registry_id,
            credential_id,
            message,
        } => {
            who.check_admin("recording ECR refresh failures")?;
            let reg = current_ecr_registry(state, &registry_id, &credential_id)?;
            let event = Event::EcrRefreshFailed {
                registry_id: reg.id.clone(),
                credential_id,
                message,
            };
            Ok(Decision {
                appends: vec![registry_append(state, reg, event)],
                outcome: Outcome::Registry(registry_id),
            })
        }
        Command::RecordVerification {
            registry_id,
            credential_id,
            verified,
        } => {
            let reg = managed_registry(state, who, &registry_id)?;
            if reg.credential.credential_id != credential_id {
                return Err(Error::FailedPrecondition(format!(
                    "registry {registry_id} no longer uses credential {credential_id}: its credential changed while it was checked"
                )));
            }
            let event = Event::RegistryVerified {
                registry_id: reg.id.clone(),
                credential_id,
                ok: verified.ok,
                message: verified.message,
            };
            Ok(Decision {
                appends: vec![registry_append(state, reg, event)],
                outcome: Outcome::Registry(registry_id),
            })
        }
        Command::ActivateRegistry { registry_id } => {
            let reg = managed_registry(state, who, &registry_id)?;
            if reg.state == RegistryState::Active {
                return Err(Error::FailedPrecondition(format!(
                    "registry {registry_id} is already active"
                )));
            }
            let event = Event::RegistryActivated {
                registry_id: reg.id.clone(),
            };
            Ok(Decision {
                appends: vec![registry_append(state, reg, event)],
                outcome: Outcome::Registry(registry_id),
            })
        }
        Command::DeactivateRegistry { registry_id } => {
            let reg = managed_registry(state, who, &registry_id)?;
            if reg.state == RegistryState::Inactive {
                return Err(Error::FailedPrecondition(format!(
                    "registry {registry_id} is already inactive"
                )));
            }
            let event = Event::RegistryDeactivated {
                registry_id: reg.id.clone(),
            };
            Ok(Decision {
                appends: vec![registry_append(state, reg, event)],
                outcome: Outcome::Registry(registry_id),
            })
        }
        Command::DeleteRegistry { registry_id } => {
            let reg = managed_registry(state, who, &registry_id)?;
            Ok(Decision {
                appends: vec![registry_append(state, reg, deleted(reg))],
                outcome: Outcome::Removed,
            })
        }
        Command::UpdateSettings {
            default_registry,
            whitelist,
        } => {
            who.check_admin("settings")?;
            let current = state.settings();
            let default_registry = match default_registry {
                Some(d) => Settings::parse_default_registry(&d)?,
                None => current.default_registry.clone(),
            };
            let whitelist = match whitelist {
                Some(w) => Settings::parse_whitelist(&w)?,
                None => current.whitelist.clone(),
            };
            let stream = Stream::Settings.name();
            Ok(Decision {
                appends: vec![Append {
                    expected_version: state.stream_version(&stream),
                    stream,
                    events: vec![Event::SettingsUpdated {
                        default_registry,
                        whitelist,
                    }],
                }],
                outcome: Outcome::Settings,
            })
        }
        Command::CreateToken {
            token_id,
            role,
            environment_id,
            description,
            secret_sha256,
        } => {
            who.check_admin("tokens")?;
            check_label("description", &description, false)?;
            let role =
                role.ok_or_else(|| Error::invalid("role", "must be ADMIN, MEMBER or AGENT"))?;
            let environment_id = match (role, environment_id.is_empty()) {
                (Role::Admin, true) => None,
                (Role::Admin, false) => {
                    return Err(Error::invalid(
                        "environment_id",
                        "must be empty for admin tokens",
                    ))
                }
                (_, true) => {
                    return Err(Error::invalid(
                        "environment_id",
                        "is required for member and agent tokens",
                    ))
                }
                (_, false) => {
                    if state.environment(&environment_id).is_none() {
                        return Err(not_found("environment", &environment_id));
                    }
                    Some(environment_id)
                }
            };
            let stream = Stream::Tokens.name();
            Ok(Decision {
                appends: vec![Append {
                    expected_version: state.stream_version(&stream),
                    stream,
                    events: vec![Event::TokenCreated {
                        token_id: token_id.clone(),
                        role,
                        environment_id,
                        description,
                        secret_sha256,
                    }],
                }],
                outcome: Outcome::Token(token_id),
            })
        }
        Command::RevokeToken { token_id } => {
            who.check_admin("tokens")?;
            if state.token(&token_id).is_none() {
                return Err(not_found("token", &token_id));
            }
            let stream = Stream::Tokens.name();
            Ok(Decision {
                appends: vec![Append {
                    expected_version: state.stream_version(&stream),
                    stream,
                    events: vec![Event::TokenRevoked { token_id }],
                }],
                outcome: Outcome::Removed,
            })
        }
    }
}

use super::command::{Command, Verified};

fn not_found(what: &'static str, id: &str) -> Error {
    Error::NotFound {
        what,
        id: id.to_owned(),
    }
}

fn check_label(field: &'static str, value: &str, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.chars().count() > MAX_LABEL_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_LABEL_LEN} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn or_current(given: String, current: &str) -> String {
    if given.is_empty() {
        current.to_owned()
    } else {
        given
    }
}

fn managed_registry<'a>(state: &'a State, who: &Principal, id: &str) -> Result<&'a Registry> {
    let reg = state
        .registry(id)
        .ok_or_else(|| not_found("registry", id))?;
    who.check_manage(&reg.environment_id, "registry", id)?;
    Ok(reg)
}

/// Returns the registry if `credential_id` is still its ECR credential; a
/// refresh that raced with an edit or a delete is refused.
fn current_ecr_registry<'a>(
    state: &'a State,
    registry_id: &str,
    credential_id: &str,
) -> Result<&'a Registry> {
    let reg = state
        .registry(registry_id)
        .ok_or_else(|| not_found("registry", registry_id))?;
    if reg.credential.credential_id != credential_id || reg.credential.ecr.is_none() {
        return Err(Error::FailedPrecondition(format!(
            "registry {registry_id} no longer uses credential {credential_id}"
        )));
    }
    Ok(reg)
}

fn registry_stream(reg: &Registry) -> String {
    Stream::Registry {
        environment_id: reg.environment_id.clone(),
        address: reg.address.clone(),
    }
    .name()
}

fn reg_version(state: &State, reg: &Registry) -> u64 {
    state.stream_version(&registry_stream(reg))
}

fn registry_append(state: &State, reg: &Registry, event: Event) -> Append {
    let stream = registry_stream(reg);
    Append {
        expected_version: state.stream_version(&stream),
        stream,
        events: vec![event],
    }
}

/// Returns a credential's event, followed by the result of the login that
/// checked it before it was recorded, if any.
fn with_verification(
    event: Event,
    registry_id: &str,
    credential_id: &str,
    verified: Option<Verified>,
) -> Vec<Event> {
    let mut events = vec![event];
    if let Some(v) = verified {
        events.push(Event::RegistryVerified {
            registry_id: registry_id.to_owned(),
            credential_id: credential_id.to_owned(),
            ok: v.ok,
            message: v.message,
        });
    }
    events
}

fn env_guard(state: &State, environment_id: &str) -> Append {
    let stream = Stream::Environment(environment_id.to_owned()).name();
    Append {
        expected_version: state.stream_version(&stream),
        stream,
        events: Vec::new(),
    }
}

fn deleted(reg: &Registry) -> Event {
    Event::RegistryDeleted {
        registry_id: reg.id.clone(),
        credential_id: reg.credential.credential_id.clone(),
    }
}

fn seal(
    sealer: &mut dyn Sealer,
    environment_id: &str,
    registry_id: &str,
    credential_id: &str,
    version: u64,
    credential: &NewCredential,
) -> CredentialRecord {
    let context = |field| SecretContext {
        environment_id,
        registry_id,
        credential_id,
        version,
        field,
    };
    let ecr = credential.ecr.as_ref().map(|keys| EcrKeysRecord {
        access_key_id: keys.access_key_id.clone(),
        secret_access_key: sealer.seal(context("secret_access_key"), &keys.secret_access_key),
    });
    // With ECR keys the password is the token, which the refresher fetches.
    let password = if ecr.is_some() {
        SealedSecret {
            nonce: Vec::new(),
            ciphertext: Vec::new(),
        }
    } else {
        sealer.seal(context("password"), &credential.password)
    };
    CredentialRecord {
        credential_id: credential_id.to_owned(),
        email: credential.email.clone(),
        username: credential.username.clone(),
        password,
        expire_time: credential.expire_time,
        ecr: ecr.map(Box::new),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
