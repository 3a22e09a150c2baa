//! The reads: every Get and List, with the caller's role and scope checked
//! here, as the writes are checked in `decide`. Another environment's
//! objects are NOT_FOUND, exactly like missing ones (R1). Lists return up
//! to `limit` objects after the key `after`, in key order; the API turns
//! them into pages.

use std::time::Duration;

use super::{App, Error, Result};
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

/// The longest a read waits for this replica to reach its `min_revision`.
pub(super) const MAX_REVISION_WAIT: Duration = Duration::from_secs(5);

impl App {
    /// Waits until this replica's view reflects at least `min_revision`
    /// (0: at once), for at most `MAX_REVISION_WAIT` or `deadline` if
    /// sooner, and returns the position it reflects: a read that follows
    /// returns at least that. Behind after the wait, `Behind` ("replica at
    /// N, asked for M").
    pub async fn reach(&self, min_revision: u64, deadline: Option<Duration>) -> Result<u64> {
        let at = self.projection.position();
        if at >= min_revision {
            return Ok(at);
        }
        // Answer before the caller's deadline passes, so it reads why.
        let wait = deadline.map_or(MAX_REVISION_WAIT, |d| {
            d.saturating_sub((d / 5).min(Duration::from_millis(250)))
                .min(MAX_REVISION_WAIT)
        });
        // Ends early, behind, only when the applier stopped (shutdown).
        let _ = tokio::time::timeout(wait, self.projection.wait_for(min_revision)).await;
        let at = self.projection.position();
        if at >= min_revision {
            Ok(at)
        } else {
            Err(Error::Behind {
                at,
                asked: min_revision,
            })
        }
    }

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
