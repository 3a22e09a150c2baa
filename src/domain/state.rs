//! The current view folded from the log (`evolve`): environments, registries
//! with their current credential, settings, tokens and stream versions. It is
//! what `decide` checks commands against and what reads serve.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use super::address::{Address, RegistryKind};
use super::credential::CredentialRecord;
use super::event::{Event, Orchestration, Recorded, Role};
use super::settings::Settings;

/// An environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Its orchestration type.
    pub orchestration: Orchestration,
    /// When it was created.
    pub create_time: SystemTime,
}

/// Whether pulls may use a registry (R10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryState {
    /// Pulls use its credential.
    Active,
    /// Pulls from its address are denied.
    Inactive,
}

/// A registry with its current credential (R7: exactly one is in use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Its id, kept across credential changes.
    pub id: String,
    /// Its environment.
    pub environment_id: String,
    /// Its kind.
    pub kind: RegistryKind,
    /// Its canonical address, never changed.
    pub address: Address,
    /// Active or inactive.
    pub state: RegistryState,
    /// Plain HTTP or unverified TLS.
    pub insecure: bool,
    /// CA bundle, empty for none.
    pub ca_certificate_pem: String,
    /// The current credential, sealed.
    pub credential: CredentialRecord,
    /// The registry stream version of the event that sealed the password
    /// (for ECR with access keys: the current token).
    pub credential_version: u64,
    /// The registry stream version of the event that sealed the ECR keys.
    pub ecr_keys_version: u64,
    /// When the current ECR token was fetched.
    pub token_issued_at: Option<SystemTime>,
    /// Why the last ECR token refresh failed, cleared by the next success.
    pub last_refresh_error: Option<String>,
    /// The last check of the current credential against the registry (a
    /// login, or for ECR with access keys the last token refresh); `None`
    /// until the first check of this credential.
    pub last_verification: Option<Verification>,
    /// When it was created.
    pub create_time: SystemTime,
    /// When it last changed.
    pub update_time: SystemTime,
}

/// The result of a check of a registry's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// When it was recorded.
    pub time: SystemTime,
    /// Whether the registry accepted the credential.
    pub ok: bool,
    /// What happened, without secrets.
    pub message: String,
}

/// What a successful ECR token refresh reads as, beside a login check.
pub const ECR_REFRESHED: &str = "ECR issued a token for the access keys";

/// An issued token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Its public id.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Its environment; `None` for admins.
    pub environment_id: Option<String>,
    /// What it is for.
    pub description: String,
    /// SHA-256 of the bearer secret.
    pub secret_sha256: [u8; 32],
    /// When it was issued.
    pub create_time: SystemTime,
}

/// Sets a stream's version in a table of versions, allocating its name
/// only for a stream the table has not seen: most events extend a stream
/// it already holds, and folding a large log at start sets one version
/// per event.
pub(crate) fn set_version(versions: &mut HashMap<String, u64>, stream: &str, version: u64) {
    match versions.get_mut(stream) {
        Some(v) => *v = version,
        None => {
            versions.insert(stream.to_owned(), version);
        }
    }
}

/// What the view keeps of an address in an environment: the version of
/// its registry stream, which outlives a deleted registry (one created
/// again at the address goes on from it), and the registry there, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AddressSlot {
    version: u64,
    registry_id: Option<String>,
}

/// The environment and the address text of a registry stream's name
/// (`reg/<environment>/<address>`), as `Stream::Registry` writes it.
fn registry_stream_parts(stream: &str) -> Option<(&str, &str)> {
    let (environment_id, address) = stream.strip_prefix("reg/")?.split_once('/')?;
    (!environment_id.is_empty() && !address.is_empty()).then_some((environment_id, address))
}

/// The fold of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    position: u64,
    environments: BTreeMap<String, Environment>,
    /// Boxed: a table's slots are a power of two in number and at most
    /// seven eighths full, so a slot holds the id and a pointer (32 bytes)
    /// rather than the id and a whole registry (472).
    registries: HashMap<String, Box<Registry>>,
    /// By environment, then by canonical address: the registry there and
    /// the version of its stream. Registry streams are most of the log's,
    /// so their versions are kept here rather than under a name of their
    /// own in `streams`.
    by_address: BTreeMap<String, BTreeMap<Address, AddressSlot>>,
    /// The ids of the registries whose credential carries ECR access keys:
    /// the refresher looks at them at every change of the log, which must
    /// not cost a visit to every registry.
    ecr: BTreeSet<String>,
    settings: Settings,
    tokens: BTreeMap<String, Token>,
    /// The versions of the other streams.
    streams: HashMap<String, u64>,
}

impl State {
    /// Returns the position of the last event folded in (0 for none).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Returns the current version of a stream (0 when it has no events).
    pub fn stream_version(&self, stream: &str) -> u64 {
        match registry_stream_parts(stream) {
            Some((environment_id, address)) => self
                .by_address
                .get(environment_id)
                .and_then(|slots| slots.get(address))
                .map_or(0, |slot| slot.version),
            None => self.streams.get(stream).copied().unwrap_or(0),
        }
    }

    /// Sets a stream's version, allocating nothing for a stream it holds.
    fn set_stream_version(&mut self, stream: &str, version: u64) {
        let Some((environment_id, address)) = registry_stream_parts(stream) else {
            set_version(&mut self.streams, stream, version);
            return;
        };
        self.address_slot(environment_id, address).version = version;
    }

    /// The slot of an address in an environment, made empty if it has none.
    fn address_slot(&mut self, environment_id: &str, address: &str) -> &mut AddressSlot {
        if !self.by_address.contains_key(environment_id) {
            self.by_address
                .insert(environment_id.to_owned(), BTreeMap::new());
        }
        let slots = self
            .by_address
            .get_mut(environment_id)
            .expect("inserted above");
        if !slots.contains_key(address) {
            slots.insert(
                Address::from_canonical_unchecked(address.to_owned()),
                AddressSlot::default(),
            );
        }
        slots.get_mut(address).expect("inserted above")
    }

    /// Returns an environment.
    pub fn environment(&self, id: &str) -> Option<&Environment> {
        self.environments.get(id)
    }

    /// Returns environments in id order, starting after `after`.
    pub fn environments_after<'a>(
        &'a self,
        after: &str,
    ) -> impl Iterator<Item = &'a Environment> + 'a {
        use std::ops::Bound;
        self.environments
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .map(|(_, e)| e)
    }

    /// Returns a registry by id.
    pub fn registry(&self, id: &str) -> Option<&Registry> {
        self.registries.get(id).map(|r| &**r)
    }

    /// Returns the registry of an environment for a canonical address.
    pub fn registry_at(&self, environment_id: &str, address: &Address) -> Option<&Registry> {
        self.by_address
            .get(environment_id)
            .and_then(|slots| slots.get(address))
            .and_then(|slot| slot.registry_id.as_deref())
            .and_then(|id| self.registry(id))
    }

    /// Returns an environment's registries in address order, starting after
    /// the address `after` (empty for the first page).
    pub fn registries_in<'a>(
        &'a self,
        environment_id: &'a str,
        after: &str,
    ) -> impl Iterator<Item = &'a Registry> + 'a {
        use std::ops::Bound;
        let start = Address::from_canonical_unchecked(after.to_owned());
        let lower = if after.is_empty() {
            Bound::Included(start)
        } else {
            Bound::Excluded(start)
        };
        self.by_address
            .get(environment_id)
            .into_iter()
            .flat_map(move |slots| slots.range((lower.clone(), Bound::Unbounded)))
            .filter_map(|(_, slot)| slot.registry_id.as_deref())
            .filter_map(|id| self.registry(id))
    }

    /// Returns the settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Returns a token.
    pub fn token(&self, id: &str) -> Option<&Token> {
        self.tokens.get(id)
    }

    /// Returns tokens in id order, starting after `after`.
    pub fn tokens_after<'a>(&'a self, after: &str) -> impl Iterator<Item = &'a Token> + 'a {
        use std::ops::Bound;
        self.tokens
            .range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
            .map(|(_, t)| t)
    }

    /// Returns whether any admin token is live.
    pub fn has_admin_token(&self) -> bool {
        self.tokens.values().any(|t| t.role == Role::Admin)
    }

    /// Applies a decision as if it were committed now by `actor`, at the
    /// positions after the state's own: what a store's commit and a fold
    /// would do, for the tests and fuzz checks that decide without a log.
    ///
    /// # Panics
    ///
    /// Panics if an append expects another version than its stream has:
    /// `decide` always decides against the state it is given.
    pub fn apply_decision(
        &mut self,
        decision: &super::decide::Decision,
        time: SystemTime,
        actor: &str,
    ) {
        for append in &decision.appends {
            assert_eq!(
                self.stream_version(&append.stream),
                append.expected_version,
                "decided against another version of {}",
                append.stream
            );
            for (i, event) in (1u64..).zip(&append.events) {
                let recorded = Recorded {
                    position: self.position() + 1,
                    stream: append.stream.clone(),
                    stream_version: append.expected_version + i,
                    time,
                    actor: actor.to_owned(),
                    request_id: String::new(),
                    event: event.clone(),
                };
                self.apply(&recorded);
            }
        }
    }

    /// Folds one recorded event in (`evolve`). Events are applied in log
    /// order; an event that names a missing object is ignored, since `decide`
    /// never emits one.
    pub fn apply(&mut self, r: &Recorded) {
        self.position = r.position;
        self.set_stream_version(&r.stream, r.stream_version);
        match &r.event {
            Event::EnvironmentCreated {
                environment_id,
                name,
                orchestration,
            } => {
                self.environments.insert(
                    environment_id.clone(),
                    Environment {
                        id: environment_id.clone(),
                        name: name.clone(),
                        orchestration: *orchestration,
                        create_time: r.time,
                    },
                );
            }
            Event::EnvironmentDeleted { environment_id } => {
                self.environments.remove(environment_id);
            }
            Event::RegistryCreated {
                registry_id,
                environment_id,
                kind,
                address,
                insecure,
                ca_certificate_pem,
                credential,
            } => {
                self.address_slot(environment_id, address.as_str())
                    .registry_id = Some(registry_id.clone());
                self.note_ecr(registry_id, credential);
                self.registries.insert(
                    registry_id.clone(),
                    Box::new(Registry {
                        id: registry_id.clone(),
                        environment_id: environment_id.clone(),
                        kind: *kind,
                        address: address.clone(),
                        state: RegistryState::Active,
                        insecure: *insecure,
                        ca_certificate_pem: ca_certificate_pem.clone(),
                        credential: credential.clone(),
                        credential_version: r.stream_version,
                        ecr_keys_version: r.stream_version,
                        token_issued_at: None,
                        last_refresh_error: None,
                        last_verification: None,
                        create_time: r.time,
                        update_time: r.time,
                    }),
                );
            }
            Event::CredentialReplaced {
                registry_id,
                credential,
                insecure,
                ca_certificate_pem,
                ..
            } => {
                if self.registries.contains_key(registry_id) {
                    self.note_ecr(registry_id, credential);
                }
                if let Some(reg) = self.registries.get_mut(registry_id) {
                    reg.credential = credential.clone();
                    reg.credential_version = r.stream_version;
                    reg.ecr_keys_version = r.stream_version;
                    reg.token_issued_at = None;
                    reg.last_refresh_error = None;
                    reg.last_verification = None;
                    reg.insecure = *insecure;
                    reg.ca_certificate_pem = ca_certificate_pem.clone();
                    reg.update_time = r.time;
                }
            }
            Event::RegistryDeactivated { registry_id } => {
                self.set_state(registry_id, RegistryState::Inactive, r.time)
            }
            Event::RegistryActivated { registry_id } => {
                self.set_state(registry_id, RegistryState::Active, r.time)
            }
            Event::RegistryDeleted { registry_id, .. } => {
                if let Some(reg) = self.registries.remove(registry_id) {
                    self.forget_address(&reg.environment_id, reg.address.as_str());
                    self.ecr.remove(registry_id);
                }
            }
            Event::EcrTokenRefreshed {
                registry_id,
                credential_id,
                token,
                issued_at,
                expire_time,
            } => {
                if let Some(reg) = self.registries.get_mut(registry_id) {
                    if reg.credential.credential_id == *credential_id {
                        reg.credential.password = token.clone();
                        reg.credential.expire_time = Some(*expire_time);
                        reg.credential_version = r.stream_version;
                        reg.token_issued_at = Some(*issued_at);
                        reg.last_refresh_error = None;
                        reg.last_verification = Some(Verification {
                            time: r.time,
                            ok: true,
                            message: ECR_REFRESHED.to_owned(),
                        });
                        reg.update_time = r.time;
                    }
                }
            }
            Event::EcrRefreshFailed {
                registry_id,
                credential_id,
                message,
            } => {
                if let Some(reg) = self.registries.get_mut(registry_id) {
                    if reg.credential.credential_id == *credential_id {
                        reg.last_refresh_error = Some(message.clone());
                        reg.last_verification = Some(Verification {
                            time: r.time,
                            ok: false,
                            message: message.clone(),
                        });
                        reg.update_time = r.time;
                    }
                }
            }
            Event::RegistryVerified {
                registry_id,
                credential_id,
                ok,
                message,
            } => {
                if let Some(reg) = self.registries.get_mut(registry_id) {
                    if reg.credential.credential_id == *credential_id {
                        reg.last_verification = Some(Verification {
                            time: r.time,
                            ok: *ok,
                            message: message.clone(),
                        });
                        reg.update_time = r.time;
                    }
                }
            }
            Event::SettingsUpdated {
                default_registry,
                whitelist,
            } => {
                self.settings = Settings {
                    default_registry: default_registry.clone(),
                    whitelist: whitelist.clone(),
                };
            }
            Event::TokenCreated {
                token_id,
                role,
                environment_id,
                description,
                secret_sha256,
            } => {
                self.tokens.insert(
                    token_id.clone(),
                    Token {
                        id: token_id.clone(),
                        role: *role,
                        environment_id: environment_id.clone(),
                        description: description.clone(),
                        secret_sha256: *secret_sha256,
                        create_time: r.time,
                    },
                );
            }
            Event::TokenRevoked { token_id } => {
                self.tokens.remove(token_id);
            }
        }
    }

    /// Notes whether a registry's new credential carries ECR access keys.
    fn note_ecr(&mut self, registry_id: &str, credential: &CredentialRecord) {
        if credential.ecr.is_none() {
            self.ecr.remove(registry_id);
        } else if !self.ecr.contains(registry_id) {
            self.ecr.insert(registry_id.to_owned());
        }
    }

    /// Empties the slot of a deleted registry's address, and drops it when
    /// no stream version is left in it (a registry folded in from another
    /// stream, as the tests do).
    fn forget_address(&mut self, environment_id: &str, address: &str) {
        let Some(slots) = self.by_address.get_mut(environment_id) else {
            return;
        };
        if let Some(slot) = slots.get_mut(address) {
            slot.registry_id = None;
            if slot.version == 0 {
                slots.remove(address);
            }
        }
        if slots.is_empty() {
            self.by_address.remove(environment_id);
        }
    }

    fn set_state(&mut self, registry_id: &str, state: RegistryState, time: SystemTime) {
        if let Some(reg) = self.registries.get_mut(registry_id) {
            reg.state = state;
            reg.update_time = time;
        }
    }

    /// Returns every registry of every environment, in no order.
    pub fn all_registries(&self) -> impl Iterator<Item = &Registry> + '_ {
        self.registries.values().map(|r| &**r)
    }

    /// Returns the ECR registries whose token registrar fetches.
    pub fn ecr_registries(&self) -> impl Iterator<Item = &Registry> + '_ {
        self.ecr.iter().filter_map(|id| self.registry(id))
    }

    /// Returns each registry whose current credential expires, with when.
    pub fn expiring_credentials(&self) -> impl Iterator<Item = (&str, SystemTime)> + '_ {
        self.all_registries()
            .filter_map(|r| r.credential.expire_time.map(|t| (r.id.as_str(), t)))
    }

    /// Returns the ids of every credential in use, for the key sweep at start.
    pub fn live_credential_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.all_registries()
            .map(|r| r.credential.credential_id.as_str())
    }
}

#[cfg(test)]
#[path = "state_test_events.rs"]
pub(crate) mod test_events;

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
