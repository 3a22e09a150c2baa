//! The reads: every Get and List, with the caller's role and scope checked
//! here, as the writes are checked in `decide`. Another environment's
//! objects are NOT_FOUND, exactly like missing ones (R1). Lists return up
//! to `limit` objects after the key `after`, in key order; the API turns
//! them into pages.

use super::{App, Result};
use crate::domain::access::Principal;
use crate::domain::error::Error as Rule;
use crate::domain::event::Role;
use crate::domain::settings::Settings;
use crate::domain::state::{Environment, Registry, Token};

fn not_found(what: &'static str, id: &str) -> super::Error {
    Rule::NotFound {
        what,
        id: id.to_owned(),
    }
    .into()
}

impl App {
    /// Returns an environment the caller may see.
    pub fn get_environment(&self, who: &Principal, id: &str) -> Result<Environment> {
        let state = self.projection.read();
        state
            .environment(id)
            .filter(|e| who.sees(&e.id))
            .cloned()
            .ok_or_else(|| not_found("environment", id))
    }

    /// Lists the environments the caller may see (its own, or all for
    /// admins), by id, after `after`.
    pub fn list_environments(
        &self,
        who: &Principal,
        after: &str,
        limit: usize,
    ) -> Vec<Environment> {
        let state = self.projection.read();
        state
            .environments_after(after)
            .filter(|e| who.role == Role::Admin || who.sees(&e.id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Returns a registry the caller may see.
    pub fn get_registry(&self, who: &Principal, id: &str) -> Result<Registry> {
        let state = self.projection.read();
        state
            .registry(id)
            .filter(|r| who.sees(&r.environment_id))
            .cloned()
            .ok_or_else(|| not_found("registry", id))
    }

    /// Lists an environment's registries by address, after `after`; the
    /// environment is the caller's own when `environment_id` is empty.
    pub fn list_registries(
        &self,
        who: &Principal,
        environment_id: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Registry>> {
        let env = who.scope(environment_id)?;
        let state = self.projection.read();
        if state.environment(env).is_none() {
            return Err(not_found("environment", env));
        }
        Ok(state
            .registries_in(env, after)
            .take(limit)
            .cloned()
            .collect())
    }

    /// Returns the settings (admin only).
    pub fn get_settings(&self, who: &Principal) -> Result<Settings> {
        who.check_admin("settings")?;
        Ok(self.projection.read().settings().clone())
    }

    /// Lists tokens, without their secrets, by id after `after` (admin only).
    pub fn list_tokens(&self, who: &Principal, after: &str, limit: usize) -> Result<Vec<Token>> {
        who.check_admin("tokens")?;
        let state = self.projection.read();
        Ok(state.tokens_after(after).take(limit).cloned().collect())
    }
}
