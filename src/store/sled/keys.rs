//! The sled key store: each credential's wrapped data key (`k`) and the
//! key store's meta (`w`), in the log's tree. Commits write and remove
//! data keys in the batch of their records (`writer.rs`); here are the
//! reads, rotation's replace, the start's sweep and the meta.

use super::{flush, prefixed, Space, DATA_KEY, KEYS_META};
use crate::store::{Error, KeyStore, Result};

/// The sled key store: the `k` and `w` keys of the log's tree, beside the
/// log's records.
#[derive(Debug)]
pub struct SledKeys {
    pub(super) tree: ::sled::Tree,
    pub(super) space: Space,
}

#[async_trait::async_trait]
impl KeyStore for SledKeys {
    async fn get(&self, credential_id: &str) -> Result<Option<Vec<u8>>> {
        let value = self.tree.get(prefixed(DATA_KEY, credential_id))?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn replace(&self, credential_id: &str, current: &[u8], new: Vec<u8>) -> Result<bool> {
        self.space.check()?;
        let swapped = self.tree.compare_and_swap(
            prefixed(DATA_KEY, credential_id),
            Some(current),
            Some(new),
        )?;
        if swapped.is_err() {
            return Ok(false);
        }
        flush(&self.tree).await.map_err(|e| self.space.explain(e))?;
        Ok(true)
    }

    async fn delete(&self, credential_ids: &[String]) -> Result<()> {
        let mut batch = ::sled::Batch::default();
        for id in credential_ids {
            batch.remove(prefixed(DATA_KEY, id));
        }
        self.tree.apply_batch(batch)?;
        flush(&self.tree).await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for item in self.tree.scan_prefix([DATA_KEY]) {
            let (key, _) = item?;
            ids.push(data_key_id(&key)?.to_owned());
        }
        Ok(ids)
    }

    async fn all(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut all = Vec::new();
        for item in self.tree.scan_prefix([DATA_KEY]) {
            let (key, wrapped) = item?;
            all.push((data_key_id(&key)?.to_owned(), wrapped.to_vec()));
        }
        Ok(all)
    }

    async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let value = self.tree.get(prefixed(KEYS_META, name))?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn set_meta(&self, name: &str, value: Vec<u8>) -> Result<()> {
        self.space.check()?;
        self.tree.insert(prefixed(KEYS_META, name), value)?;
        flush(&self.tree).await?;
        Ok(())
    }
}

/// The credential id of a data key's key in the tree.
fn data_key_id(key: &[u8]) -> Result<&str> {
    std::str::from_utf8(&key[1..])
        .map_err(|_| Error::storage("the key store holds a credential id that is not utf-8"))
}
