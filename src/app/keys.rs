//! Data keys of live credentials: created and sealed with while deciding,
//! stored wrapped in the commit of the events that use them, kept unwrapped
//! in memory for ResolvePull, and destroyed with their credential's commit
//! (crypto-shredding).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{App, KeyStatus, Result};
use crate::crypto::{DataKey, Keyring, WrappedKey};
use crate::domain::access::Principal;
use crate::domain::credential::{SealedSecret, Sealer, SecretContext};
use crate::store::KeyStore;

/// The data keys of live credentials.
#[derive(Debug, Clone)]
pub struct DataKeys {
    store: Arc<dyn KeyStore>,
    kek: Arc<Keyring>,
    live: Arc<RwLock<HashMap<String, Arc<DataKey>>>>,
}

/// The `Sealer` given to `decide`: seals with a live credential's key (an
/// ECR token joins its credential), or with a key created for a new
/// credential, which is stored before the events that use it.
#[derive(Debug)]
pub(super) struct NewKeys {
    live: Arc<RwLock<HashMap<String, Arc<DataKey>>>>,
    keys: Vec<(String, Arc<DataKey>)>,
}

impl Sealer for NewKeys {
    fn seal(&mut self, ctx: SecretContext<'_>, secret: &SecretString) -> SealedSecret {
        let live = self
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ctx.credential_id)
            .cloned();
        let created = self
            .keys
            .iter()
            .find(|(id, _)| id == ctx.credential_id)
            .map(|(_, key)| Arc::clone(key));
        let key = match created.or(live) {
            Some(key) => key,
            None => {
                let key = Arc::new(DataKey::generate());
                self.keys
                    .push((ctx.credential_id.to_owned(), Arc::clone(&key)));
                key
            }
        };
        key.seal(&ctx, secret.expose_secret().as_bytes())
    }
}

impl DataKeys {
    /// Returns an empty set over a key store.
    pub fn new(store: Arc<dyn KeyStore>, kek: Arc<Keyring>) -> Self {
        Self {
            store,
            kek,
            live: Arc::default(),
        }
    }

    /// Loads the keys of live credentials and deletes every other stored
    /// key: those of credentials destroyed, or never committed, before the
    /// keys moved into commits.
    ///
    /// The stored keys are listed before `live` is asked, and `live` must
    /// answer at a log position read after the listing: a key is written
    /// with the commit that creates its credential, so every listed key's
    /// credential is known to `live` by then, and a credential committed
    /// meanwhile (by another replica) is never taken for an orphan.
    pub async fn load<F, Fut>(&self, live: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Vec<String>>,
    {
        let stored = self.store.all().await?;
        let live: std::collections::HashSet<String> = live().await.into_iter().collect();
        let mut orphans = Vec::new();
        let mut loaded = HashMap::new();
        for (id, wrapped) in stored {
            if !live.contains(&id) {
                orphans.push(id);
                continue;
            }
            let key = self.kek.unwrap_key(&WrappedKey(wrapped), &id)?;
            loaded.insert(id, Arc::new(key));
        }
        for id in &live {
            if !loaded.contains_key(id) {
                tracing::error!(credential_id = %id, "no data key for a live credential: it cannot be handed out");
            }
        }
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "deleting data keys of destroyed credentials"
            );
            self.store.delete(&orphans).await?;
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    /// Returns a sealer for one command.
    pub(super) fn sealer(&self) -> NewKeys {
        NewKeys {
            live: Arc::clone(&self.live),
            keys: Vec::new(),
        }
    }

    /// Returns the new keys of a sealer wrapped for the commit that carries
    /// them. The ids are fresh, so a key whose commit fails opens nothing.
    pub(super) fn wrap_new(&self, new: &NewKeys) -> Vec<(String, Vec<u8>)> {
        new.keys
            .iter()
            .map(|(id, key)| (id.clone(), self.kek.wrap(key, id).0))
            .collect()
    }

    /// Takes note of a durable commit that the projection has applied: its
    /// new keys are usable at once, its destroyed ones are forgotten.
    pub(super) fn committed(&self, new: &NewKeys, destroyed: &[String]) {
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        live.extend(
            new.keys
                .iter()
                .map(|(id, key)| (id.clone(), Arc::clone(key))),
        );
        for id in destroyed {
            live.remove(id);
        }
    }

    /// Forgets keys from memory, for a commit whose outcome is not known:
    /// a key still live is read from the key store again when needed.
    pub(super) fn forget(&self, ids: &[String]) {
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            live.remove(id);
        }
    }

    /// Returns a credential's data key: from memory, or else from the key
    /// store, where a commit whose outcome this process never learned (a
    /// failed flush that became durable later, another replica's write)
    /// left it; `None` when the key store has none (the credential was
    /// destroyed). A key read from the store is kept in memory only if
    /// `still_live` says, under the memory's lock, that its credential is
    /// live: a destruction applied meanwhile never brings it back.
    async fn key(
        &self,
        credential_id: &str,
        still_live: impl Fn() -> bool,
    ) -> Result<Option<Arc<DataKey>>> {
        let cached = {
            let live = self.live.read().unwrap_or_else(|p| p.into_inner());
            live.get(credential_id).cloned()
        };
        if let Some(key) = cached {
            return Ok(Some(key));
        }
        let Some(wrapped) = self.store.get(credential_id).await? else {
            return Ok(None);
        };
        let key = Arc::new(self.kek.unwrap_key(&WrappedKey(wrapped), credential_id)?);
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        if still_live() {
            live.insert(credential_id.to_owned(), Arc::clone(&key));
        }
        Ok(Some(key))
    }

    /// Re-wraps up to `limit` (0: every) stored data keys not yet wrapped by
    /// the current key-encryption key, each in one atomic replace that
    /// loses to a concurrent destruction (a destroyed key stays destroyed).
    /// Returns how many were re-wrapped and how many are still to do.
    pub async fn rewrap(&self, limit: usize) -> Result<(u64, u64)> {
        let mut rewrapped = 0u64;
        for (id, stored) in self.store.all().await? {
            if limit != 0 && rewrapped == limit as u64 {
                break;
            }
            let wrapped = WrappedKey(stored);
            if self.kek.is_current(&wrapped) {
                continue;
            }
            // One key that does not open (its key-encryption key is not
            // held) must not stop the others; it stays counted as remaining.
            let new = match self.kek.rewrap(&wrapped, &id) {
                Ok(new) => new,
                Err(e) => {
                    tracing::warn!(credential_id = %id, error = %e, "a data key could not be re-wrapped");
                    continue;
                }
            };
            if self.store.replace(&id, &wrapped.0, new.0).await? {
                rewrapped += 1;
            }
        }
        let remaining = self
            .usage()
            .await?
            .into_iter()
            .filter(|(key_id, _)| *key_id != self.kek.current().key_id())
            .map(|(_, count)| count)
            .sum();
        Ok((rewrapped, remaining))
    }

    /// Counts the stored data keys by the key-encryption key that wraps
    /// them (`unknown` for one no held key opens).
    pub async fn usage(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut usage = std::collections::BTreeMap::new();
        for (id, stored) in self.store.all().await? {
            let by = self
                .kek
                .wrapped_by(&WrappedKey(stored), &id)
                .unwrap_or_else(|| "unknown".to_owned());
            *usage.entry(by).or_insert(0) += 1;
        }
        Ok(usage)
    }

    /// Opens a sealed secret of a credential; `None` when its data key is
    /// gone (the credential was destroyed since it was read as live).
    /// `still_live` tells whether the credential is live now (see `key`).
    pub async fn open(
        &self,
        ctx: &SecretContext<'_>,
        sealed: &SealedSecret,
        still_live: impl Fn() -> bool,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let Some(key) = self.key(ctx.credential_id, still_live).await? else {
            return Ok(None);
        };
        Ok(Some(key.open(ctx, sealed)?))
    }
}

impl App {
    /// Re-wraps up to `limit` (0: all) live data keys under the current
    /// key-encryption key, while serving (admin only).
    pub async fn rewrap_keys(&self, who: &Principal, limit: usize) -> Result<KeyStatus> {
        who.check_admin("key rotation")?;
        let (rewrapped, remaining) = self.keys.rewrap(limit).await?;
        tracing::info!(rewrapped, remaining, "re-wrapped data keys");
        let mut status = self.key_status(who).await?;
        status.rewrapped = rewrapped;
        status.remaining = remaining;
        Ok(status)
    }

    /// Returns the key-encryption keys in force and how many data keys each
    /// wraps (admin only).
    pub async fn key_status(&self, who: &Principal) -> Result<KeyStatus> {
        who.check_admin("key rotation")?;
        let usage = self.keys.usage().await?;
        let current_key_id = self.kek.current().key_id();
        let remaining = usage
            .iter()
            .filter(|(id, _)| **id != current_key_id)
            .map(|(_, n)| n)
            .sum();
        Ok(KeyStatus {
            current_key_id,
            loaded_key_ids: self.kek.key_ids(),
            usage,
            rewrapped: 0,
            remaining,
        })
    }
}
