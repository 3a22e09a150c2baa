//! The PostgreSQL key store: wrapped data keys and the key store's meta,
//! in the same database as the log (a commit writes its keys in its own
//! transaction, in `mod.rs`).

use deadpool_postgres::Pool;

use super::{pg_error, pool_error, KeyStore, Result};

/// The PostgreSQL key store, in the same database as the log.
#[derive(Debug)]
pub struct PgKeys {
    pub(super) pool: Pool,
}

#[async_trait::async_trait]
impl KeyStore for PgKeys {
    async fn get(&self, credential_id: &str) -> Result<Option<Vec<u8>>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt(
                "SELECT wrapped FROM registrar_keys WHERE credential_id = $1",
                &[&credential_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn replace(&self, credential_id: &str, current: &[u8], new: Vec<u8>) -> Result<bool> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let changed = client
            .execute(
                "UPDATE registrar_keys SET wrapped = $3 WHERE credential_id = $1 AND wrapped = $2",
                &[&credential_id, &current, &new],
            )
            .await
            .map_err(pg_error)?;
        Ok(changed == 1)
    }

    async fn delete(&self, credential_ids: &[String]) -> Result<()> {
        if credential_ids.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "DELETE FROM registrar_keys WHERE credential_id = ANY($1)",
                &[&credential_ids],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                "SELECT credential_id FROM registrar_keys ORDER BY credential_id COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn all(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = client
            .query(
                "SELECT credential_id, wrapped FROM registrar_keys ORDER BY credential_id COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = client
            .query_opt(
                "SELECT value FROM registrar_key_meta WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set_meta(&self, name: &str, value: Vec<u8>) -> Result<()> {
        let client = self.pool.get().await.map_err(pool_error)?;
        client
            .execute(
                "INSERT INTO registrar_key_meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[&name, &value],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}
