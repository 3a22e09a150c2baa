//! Data keys of live credentials: created and sealed with while deciding,
//! stored wrapped before the events that use them, kept unwrapped in memory
//! for ResolvePull, and destroyed with their credential (crypto-shredding).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::Result;
use crate::crypto::{DataKey, Kek, SealContext, Sealed, WrappedKey};
use crate::domain::credential::{SealedSecret, Sealer, SecretContext};
use crate::store::KeyStore;

/// The data keys of live credentials.
#[derive(Debug, Clone)]
pub struct DataKeys {
    store: Arc<dyn KeyStore>,
    kek: Arc<Kek>,
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
        let sealed = key.seal(&seal_context(&ctx), secret.expose_secret().as_bytes());
        SealedSecret {
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
        }
    }
}

/// Converts the domain's binding into the crypto module's.
fn seal_context<'a>(ctx: &SecretContext<'a>) -> SealContext<'a> {
    SealContext {
        environment_id: ctx.environment_id,
        registry_id: ctx.registry_id,
        credential_id: ctx.credential_id,
        version: ctx.version,
        field: ctx.field,
    }
}

impl DataKeys {
    /// Returns an empty set over a key store.
    pub fn new(store: Arc<dyn KeyStore>, kek: Arc<Kek>) -> Self {
        Self {
            store,
            kek,
            live: Arc::default(),
        }
    }

    /// Loads the keys of `live` credentials and deletes every other stored
    /// key: those of credentials destroyed, or never committed, before a crash.
    pub async fn load(&self, live: &[String]) -> Result<()> {
        let stored = self.store.list().await?;
        let mut orphans = Vec::new();
        let mut loaded = HashMap::new();
        for id in stored {
            if !live.contains(&id) {
                orphans.push(id);
                continue;
            }
            if let Some(wrapped) = self.store.get(&id).await? {
                let key = self.kek.unwrap_key(&WrappedKey(wrapped), &id)?;
                loaded.insert(id, Arc::new(key));
            }
        }
        for id in live {
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

    /// Stores the wrapped new keys durably and makes them usable, before the
    /// events that use them: whoever sees such an event finds its key. The
    /// ids are fresh, so an uncommitted key opens nothing.
    pub(super) async fn store_new(&self, new: &NewKeys) -> Result<()> {
        for (id, key) in &new.keys {
            let wrapped = self.kek.wrap(key, id);
            self.store.put(id, wrapped.0).await?;
        }
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        live.extend(
            new.keys
                .iter()
                .map(|(id, key)| (id.clone(), Arc::clone(key))),
        );
        Ok(())
    }

    /// Deletes keys whose events were not committed.
    pub(super) async fn discard(&self, new: &NewKeys) {
        let ids: Vec<String> = new.keys.iter().map(|(id, _)| id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        {
            let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
            for id in &ids {
                live.remove(id);
            }
        }
        if let Err(e) = self.store.delete(&ids).await {
            // The start-up sweep deletes them later.
            tracing::warn!(error = %e, "could not delete uncommitted data keys");
        }
    }

    /// Destroys the keys of destroyed credentials. A failure here is logged:
    /// the start-up sweep deletes the keys of credentials that are not live.
    pub(super) async fn destroy(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        {
            let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                live.remove(id);
            }
        }
        if let Err(e) = self.store.delete(ids).await {
            tracing::warn!(error = %e, "could not delete destroyed data keys; they are swept at the next start");
        }
    }

    /// Opens a sealed secret of a live credential.
    pub fn open(
        &self,
        ctx: &SecretContext<'_>,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let key = {
            let live = self.live.read().unwrap_or_else(|p| p.into_inner());
            live.get(ctx.credential_id).cloned()
        }
        .ok_or(crate::crypto::Error::Unseal)?;
        let sealed = Sealed {
            nonce: sealed.nonce.clone(),
            ciphertext: sealed.ciphertext.clone(),
        };
        Ok(key.open(&seal_context(ctx), &sealed)?)
    }
}
