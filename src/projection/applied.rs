//! Applied records as watchers see them. When the applier folds a record
//! it also notes the change it makes for an environment's watchers (the
//! registry as it is after the event, never a secret: R9), so watchers of
//! the recent window need no fold of their own; the first watcher to send
//! a change encodes it, and every other watcher sends the same bytes (as
//! the Kubernetes API server's watch cache serializes an object once for
//! all its watchers).

use std::sync::OnceLock;

use bytes::Bytes;

use crate::domain::event::{Event, Recorded, Stream};
use crate::domain::settings::Settings;
use crate::domain::state::{Registry, State};

/// One change an environment's watchers see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A registry was created or changed; its view without secrets.
    Registry(Box<Registry>),
    /// A registry was deleted.
    RegistryRemoved {
        /// Its id.
        id: String,
        /// Its address.
        address: String,
    },
    /// The settings changed.
    Settings(Settings),
    /// The environment was deleted: the watch ends.
    EnvironmentDeleted,
}

/// Whose watchers see a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every environment's (the settings).
    All,
    /// One environment's.
    Environment(String),
}

/// A record the projection applied, with what watchers see of it.
#[derive(Debug)]
pub struct Applied {
    /// The record.
    pub recorded: Recorded,
    /// The change it makes for watchers, if any, and whose it is.
    pub watched: Option<(Audience, Change)>,
    /// The change's message as sent to watchers, encoded once by the first
    /// watcher that sends it.
    pub encoded: OnceLock<Bytes>,
}

impl Applied {
    /// Notes what `recorded` changes for watchers; `state` has applied it.
    pub fn new(recorded: Recorded, state: &State) -> Self {
        let watched = watched(&recorded, |id| state.registry(id).cloned());
        Self {
            recorded,
            watched,
            encoded: OnceLock::new(),
        }
    }

    /// Returns the change for watchers of `environment_id`, if it is one.
    pub fn change_for(&self, environment_id: &str) -> Option<&Change> {
        match &self.watched {
            Some((Audience::All, change)) => Some(change),
            Some((Audience::Environment(env), change)) if env == environment_id => Some(change),
            _ => None,
        }
    }
}

/// Returns the change `recorded` makes for watchers and whose it is;
/// `registry` returns a registry as it is after the event.
pub fn watched(
    recorded: &Recorded,
    registry: impl FnOnce(&str) -> Option<Registry>,
) -> Option<(Audience, Change)> {
    let (audience, address) = match Stream::parse(&recorded.stream)? {
        Stream::Settings => (Audience::All, None),
        Stream::Environment(env) => (Audience::Environment(env), None),
        Stream::Registry {
            environment_id,
            address,
        } => (Audience::Environment(environment_id), Some(address)),
        Stream::Tokens => return None,
    };
    let change = match &recorded.event {
        Event::SettingsUpdated {
            default_registry,
            whitelist,
        } => Change::Settings(Settings {
            default_registry: default_registry.clone(),
            whitelist: whitelist.clone(),
        }),
        Event::EnvironmentDeleted { .. } => Change::EnvironmentDeleted,
        Event::RegistryDeleted { registry_id, .. } => Change::RegistryRemoved {
            id: registry_id.clone(),
            address: address.map(|a| a.as_str().to_owned()).unwrap_or_default(),
        },
        Event::RegistryCreated { registry_id, .. }
        | Event::CredentialReplaced { registry_id, .. }
        | Event::RegistryActivated { registry_id }
        | Event::RegistryDeactivated { registry_id }
        | Event::EcrTokenRefreshed { registry_id, .. }
        | Event::EcrRefreshFailed { registry_id, .. }
        | Event::RegistryVerified { registry_id, .. } => {
            Change::Registry(Box::new(registry(registry_id)?))
        }
        // Not a change a watcher sees: an environment's creation comes
        // before any watch of it, and tokens are not in its streams.
        Event::EnvironmentCreated { .. }
        | Event::TokenCreated { .. }
        | Event::TokenRevoked { .. } => return None,
    };
    Some((audience, change))
}
