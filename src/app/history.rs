//! The history of an environment: its events read back from the log,
//! newest first, redacted to what changed (field names, never secrets).
//! Admins and the environment's members only (R1: another environment is
//! NOT_FOUND); agents are refused.
//!
//! The log is read backwards in chunks from the page's cursor, at most
//! `MAX_SCAN` records per call, so a page costs a bounded read whatever
//! the log's size; a page cut short by that bound still carries a cursor.

use std::time::SystemTime;

use super::{App, Result};
use crate::domain::access::Principal;
use crate::domain::address::Address;
use crate::domain::credential::CredentialRecord;
use crate::domain::error::Error as Rule;
use crate::domain::event::{CredentialCause, Event, Recorded, Role, Stream};
use crate::domain::whitelist::Whitelist;
use crate::store::payload;

/// Records read back per step.
const CHUNK: u64 = 512;
/// Most records one call reads.
const MAX_SCAN: usize = 20_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The environment was created.
    EnvironmentCreated,
    /// A registry was created.
    RegistryCreated,
    /// A credential was added for an address that had one.
    CredentialReplaced,
    /// A registry was edited.
    RegistryEdited,
    /// A registry was activated.
    RegistryActivated,
    /// A registry was deactivated.
    RegistryDeactivated,
    /// A registry was deleted.
    RegistryDeleted,
    /// An ECR token was fetched.
    EcrTokenRefreshed,
    /// Fetching an ECR token failed.
    EcrRefreshFailed,
    /// The settings changed.
    SettingsChanged,
    /// The credential was checked against the registry.
    RegistryVerified,
}

/// One change, redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its log position.
    pub position: u64,
    /// When it was committed.
    pub time: SystemTime,
    /// Who made it (a token id, or `system`).
    pub actor: String,
    /// The caller's request id.
    pub request_id: String,
    /// What happened.
    pub action: Action,
    /// The registry concerned, if any.
    pub registry_id: String,
    /// Its address.
    pub address: String,
    /// The credential in use after it (registry events).
    pub credential_id: String,
    /// Names of the fields that changed.
    pub changed_fields: Vec<&'static str>,
    /// Why an ECR refresh failed.
    pub message: String,
}

/// A page of history: newest first, and the cursor of the next page.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The entries.
    pub entries: Vec<HistoryEntry>,
    /// Pass as `before` for the next (older) page; `None` at the start.
    pub next_before: Option<u64>,
}

/// What a registry looked like after an event, for the changed fields.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    username: String,
    email: String,
    insecure: bool,
    ca_certificate_pem: String,
    expire_time: Option<SystemTime>,
    access_key_id: Option<String>,
}

impl Shape {
    fn of(credential: &CredentialRecord, insecure: bool, ca: &str) -> Self {
        Self {
            username: credential.username.clone(),
            email: credential.email.clone(),
            insecure,
            ca_certificate_pem: ca.to_owned(),
            expire_time: credential.expire_time,
            access_key_id: credential.ecr.as_ref().map(|e| e.access_key_id.clone()),
        }
    }

    fn changed(&self, after: &Shape) -> Vec<&'static str> {
        let mut out = vec!["credential_id"];
        if self.username != after.username {
            out.push("username");
        }
        if self.email != after.email {
            out.push("email");
        }
        if self.insecure != after.insecure {
            out.push("insecure");
        }
        if self.ca_certificate_pem != after.ca_certificate_pem {
            out.push("ca_certificate_pem");
        }
        if self.expire_time != after.expire_time {
            out.push("expire_time");
        }
        if self.access_key_id != after.access_key_id {
            out.push("ecr_access_key_id");
        }
        out
    }
}

impl App {
    /// Returns up to `size` changes of `environment_id` (the caller's own
    /// when empty), of one registry when `registry_id` is given, older than
    /// position `before` (from the newest when `None`).
    pub async fn history(
        &self,
        who: &Principal,
        environment_id: &str,
        registry_id: &str,
        before: Option<u64>,
        size: usize,
    ) -> Result<HistoryPage> {
        if who.role == Role::Agent {
            return Err(Rule::PermissionDenied(
                "the history is for admins and the environment's members, not agents".to_owned(),
            )
            .into());
        }
        let environment_id = match (environment_id, &who.environment_id) {
            ("", Some(own)) => own.as_str(),
            (id, _) => id,
        };
        // Visible and existing, or NOT_FOUND like any other object.
        self.get_environment(who, environment_id)?;
        if !registry_id.is_empty() {
            let state = self.projection.read();
            if state
                .registry(registry_id)
                .is_some_and(|r| r.environment_id != environment_id)
            {
                return Err(Rule::NotFound {
                    what: "registry",
                    id: registry_id.to_owned(),
                }
                .into());
            }
        }
        let applied = self.projection.position();
        let mut cursor = before.unwrap_or(applied + 1).min(applied + 1);
        let mut entries = Vec::new();
        let mut scanned = 0usize;
        let mut streams = Streams::default();
        while cursor > 1 && entries.len() < size && scanned < MAX_SCAN {
            let top = cursor - 1;
            let from = top.saturating_sub(CHUNK - 1).max(1);
            let records = self.log.read(from, (top - from + 1) as usize).await?;
            for envelope in records.iter().rev() {
                if entries.len() == size || scanned == MAX_SCAN {
                    break;
                }
                scanned += 1;
                cursor = envelope.position;
                let recorded = payload::decode(envelope)?;
                if let Some(entry) = self
                    .entry(&recorded, environment_id, registry_id, &mut streams)
                    .await?
                {
                    entries.push(entry);
                }
            }
            if records.is_empty() {
                break;
            }
        }
        Ok(HistoryPage {
            entries,
            next_before: (cursor > 1).then_some(cursor),
        })
    }

    /// The entry of one record, if it belongs to the history asked for.
    async fn entry(
        &self,
        r: &Recorded,
        environment_id: &str,
        registry_id: &str,
        streams: &mut Streams,
    ) -> Result<Option<HistoryEntry>> {
        let in_environment = match Stream::parse(&r.stream) {
            Some(Stream::Environment(id)) => id == environment_id,
            Some(Stream::Registry {
                environment_id: id, ..
            }) => id == environment_id,
            Some(Stream::Settings) => true,
            _ => false,
        };
        if !in_environment {
            return Ok(None);
        }
        let mut entry = HistoryEntry {
            position: r.position,
            time: r.time,
            actor: r.actor.clone(),
            request_id: r.request_id.clone(),
            action: Action::SettingsChanged,
            registry_id: String::new(),
            address: match Stream::parse(&r.stream) {
                Some(Stream::Registry { address, .. }) => address.to_string(),
                _ => String::new(),
            },
            credential_id: String::new(),
            changed_fields: Vec::new(),
            message: String::new(),
        };
        let registry = |entry: &mut HistoryEntry, id: &str, action: Action| {
            entry.registry_id = id.to_owned();
            entry.action = action;
        };
        match &r.event {
            Event::EnvironmentCreated { .. } => entry.action = Action::EnvironmentCreated,
            Event::RegistryCreated {
                registry_id,
                credential,
                ..
            } => {
                registry(&mut entry, registry_id, Action::RegistryCreated);
                entry.credential_id.clone_from(&credential.credential_id);
            }
            Event::CredentialReplaced {
                registry_id,
                credential,
                insecure,
                ca_certificate_pem,
                cause,
                ..
            } => {
                let action = match cause {
                    CredentialCause::Added => Action::CredentialReplaced,
                    CredentialCause::Edited => Action::RegistryEdited,
                };
                registry(&mut entry, registry_id, action);
                entry.credential_id.clone_from(&credential.credential_id);
                let after = Shape::of(credential, *insecure, ca_certificate_pem);
                entry.changed_fields = self
                    .shape_before(&r.stream, r.position, streams)
                    .await?
                    .map_or_else(|| vec!["credential_id"], |before| before.changed(&after));
            }
            Event::RegistryActivated { registry_id } => {
                registry(&mut entry, registry_id, Action::RegistryActivated);
                entry.changed_fields = vec!["state"];
            }
            Event::RegistryDeactivated { registry_id } => {
                registry(&mut entry, registry_id, Action::RegistryDeactivated);
                entry.changed_fields = vec!["state"];
            }
            Event::RegistryDeleted {
                registry_id,
                credential_id,
            } => {
                registry(&mut entry, registry_id, Action::RegistryDeleted);
                entry.credential_id.clone_from(credential_id);
            }
            Event::EcrTokenRefreshed {
                registry_id,
                credential_id,
                ..
            } => {
                registry(&mut entry, registry_id, Action::EcrTokenRefreshed);
                entry.credential_id.clone_from(credential_id);
                entry.changed_fields = vec!["password", "expire_time"];
            }
            Event::EcrRefreshFailed {
                registry_id,
                credential_id,
                message,
            } => {
                registry(&mut entry, registry_id, Action::EcrRefreshFailed);
                entry.credential_id.clone_from(credential_id);
                entry.message.clone_from(message);
            }
            Event::RegistryVerified {
                registry_id,
                credential_id,
                message,
                ..
            } => {
                registry(&mut entry, registry_id, Action::RegistryVerified);
                entry.credential_id.clone_from(credential_id);
                entry.changed_fields = vec!["last_verification"];
                entry.message.clone_from(message);
            }
            Event::SettingsUpdated {
                default_registry,
                whitelist,
            } => {
                entry.action = Action::SettingsChanged;
                let (default_before, whitelist_before) =
                    self.settings_before(r.position, streams).await?;
                if &default_before != default_registry {
                    entry.changed_fields.push("default_registry");
                }
                if &whitelist_before != whitelist {
                    entry.changed_fields.push("whitelist");
                }
            }
            // Environment deletions end the environment (its history is
            // not listed after), tokens are not the environment's.
            Event::EnvironmentDeleted { .. }
            | Event::TokenCreated { .. }
            | Event::TokenRevoked { .. } => {
                return Ok(None);
            }
        }
        if !registry_id.is_empty() && entry.registry_id != registry_id {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// The events of `stream` up to `up_to`, read once per call.
    async fn stream_events<'a>(
        &self,
        stream: &str,
        up_to: u64,
        streams: &'a mut Streams,
    ) -> Result<&'a [Recorded]> {
        if !streams.0.contains_key(stream) {
            let mut events = Vec::new();
            for envelope in self.log.read_stream(stream, up_to).await? {
                events.push(payload::decode(&envelope)?);
            }
            streams.0.insert(stream.to_owned(), events);
        }
        Ok(streams.0.get(stream).map_or(&[], Vec::as_slice))
    }

    /// The registry's shape after the last event of `stream` before
    /// `position` that set it.
    async fn shape_before(
        &self,
        stream: &str,
        position: u64,
        streams: &mut Streams,
    ) -> Result<Option<Shape>> {
        let up_to = self.projection.position();
        let mut shape = None;
        for recorded in self.stream_events(stream, up_to, streams).await? {
            if recorded.position >= position {
                break;
            }
            match &recorded.event {
                Event::RegistryCreated {
                    credential,
                    insecure,
                    ca_certificate_pem,
                    ..
                }
                | Event::CredentialReplaced {
                    credential,
                    insecure,
                    ca_certificate_pem,
                    ..
                } => shape = Some(Shape::of(credential, *insecure, ca_certificate_pem)),
                Event::EcrTokenRefreshed { expire_time, .. } => {
                    if let Some(s) = shape.as_mut() {
                        s.expire_time = Some(*expire_time);
                    }
                }
                // A deleted registry's address starts afresh.
                Event::RegistryDeleted { .. } => shape = None,
                _ => {}
            }
        }
        Ok(shape)
    }

    /// The settings before `position` (the defaults before the first
    /// change).
    async fn settings_before(
        &self,
        position: u64,
        streams: &mut Streams,
    ) -> Result<(Option<Address>, Whitelist)> {
        let up_to = self.projection.position();
        let name = Stream::Settings.name();
        let events = self.stream_events(&name, up_to, streams).await?;
        let last = events
            .iter()
            .take_while(|r| r.position < position)
            .filter_map(|r| match &r.event {
                Event::SettingsUpdated {
                    default_registry,
                    whitelist,
                } => Some((default_registry.clone(), whitelist.clone())),
                _ => None,
            })
            .last();
        Ok(last.unwrap_or_else(|| {
            let defaults = crate::domain::settings::Settings::default();
            (defaults.default_registry, defaults.whitelist)
        }))
    }
}

/// The streams one call has read whole, decoded: each registry's and the
/// settings' stream is read at most once per call, however many of its
/// events the page lists.
#[derive(Debug, Default)]
struct Streams(std::collections::HashMap<String, Vec<Recorded>>);
