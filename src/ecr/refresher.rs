//! The refresher: one task that keeps every ECR registry with access keys
//! supplied with a fresh token, at the latest at half of each token's
//! lifetime, backing off (exponentially, with jitter) after failures.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use secrecy::SecretString;

use super::client::{endpoint_for, FetchRequest, TokenSource};
use crate::app::App;
use crate::audit::{Caller, Entry};
use crate::domain::access::Principal;
use crate::domain::command::Command;
use crate::domain::credential::{SealedSecret, SecretContext};
use crate::store::postgres::{Elector, Lease};

/// How the refresher behaves.
#[derive(Debug, Clone)]
pub struct RefresherSettings {
    /// The API URL to use instead of the one derived from each address.
    /// Tests only: it has no flag and no environment variable.
    pub endpoint_override: Option<String>,
    /// How often schedules are checked, besides every change of the log.
    pub poll: Duration,
    /// The first wait after a failure; doubled per failure.
    pub min_backoff: Duration,
    /// The longest wait after failures.
    pub max_backoff: Duration,
}

impl Default for RefresherSettings {
    fn default() -> Self {
        Self {
            endpoint_override: None,
            poll: Duration::from_secs(5),
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// A registry's place in the schedule.
#[derive(Debug)]
struct Slot {
    credential_id: String,
    failures: u32,
    retry_at: Option<SystemTime>,
}

/// What a due refresh needs, copied out of the read lock.
#[derive(Debug)]
struct Due {
    registry_id: String,
    environment_id: String,
    credential_id: String,
    address: crate::domain::address::Address,
    access_key_id: String,
    secret_access_key: SealedSecret,
    keys_version: u64,
    last_error: Option<String>,
}

/// Starts the refresher; it runs until aborted. With an elector (replicas
/// on a shared database) it refreshes only while this replica holds the
/// leader lock, so no token is ever fetched by two replicas at once.
pub fn spawn(
    app: App,
    source: Arc<dyn TokenSource>,
    settings: RefresherSettings,
    elector: Option<Elector>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(elector) = elector else {
            return run(&app, source.as_ref(), &settings, None).await;
        };
        loop {
            let lease = elector.lead().await;
            tracing::info!("this replica refreshes ECR tokens");
            tokio::select! {
                () = run(&app, source.as_ref(), &settings, Some(&lease)) => return,
                () = lease.lost() => {}
            }
            tracing::warn!("lost the ECR refresh lock; another replica takes over");
        }
    })
}

/// Refreshes what is due, while `lease` (if any) holds; returns when the
/// log closes or the lease is lost.
async fn run(
    app: &App,
    source: &dyn TokenSource,
    settings: &RefresherSettings,
    lease: Option<&Lease>,
) {
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let mut head = app.log().watch_head();
    loop {
        for due in due_now(app, &mut slots) {
            // Cut off from the database, another replica may lead by now.
            if let Some(lease) = lease {
                if !lease.held().await {
                    return;
                }
            }
            let outcome = refresh(app, source, settings, &due).await;
            app.metrics().ecr_refresh(outcome.is_ok());
            let Some(slot) = slots.get_mut(&due.registry_id) else {
                continue;
            };
            match outcome {
                Ok(()) => {
                    slot.failures = 0;
                    slot.retry_at = None;
                }
                Err(message) => {
                    slot.failures = slot.failures.saturating_add(1);
                    let wait = backoff(settings, slot.failures);
                    slot.retry_at = Some(app.now() + wait);
                    tracing::warn!(
                        registry_id = %due.registry_id,
                        address = %due.address,
                        failures = slot.failures,
                        retry_in_secs = wait.as_secs(),
                        error = %message,
                        "ECR token refresh failed"
                    );
                    if due.last_error.as_deref() != Some(message.as_str()) {
                        record_failure(app, &due, message).await;
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(settings.poll) => {}
            changed = head.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Returns the registries whose token is due, updating the schedule.
fn due_now(app: &App, slots: &mut HashMap<String, Slot>) -> Vec<Due> {
    let now = app.now();
    let state = app.projection().read();
    let mut due = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for reg in state.ecr_registries() {
        let Some(keys) = &reg.credential.ecr else {
            continue;
        };
        seen.insert(reg.id.as_str());
        let slot = slots.entry(reg.id.clone()).or_insert_with(|| Slot {
            credential_id: reg.credential.credential_id.clone(),
            failures: 0,
            retry_at: None,
        });
        if slot.credential_id != reg.credential.credential_id {
            // New keys: start over, at once.
            *slot = Slot {
                credential_id: reg.credential.credential_id.clone(),
                failures: 0,
                retry_at: None,
            };
        }
        let due_at = match (
            slot.retry_at,
            reg.token_issued_at,
            reg.credential.expire_time,
        ) {
            (Some(retry), _, _) => retry,
            (None, Some(issued), Some(expires)) => half_life(issued, expires),
            _ => now,
        };
        if due_at <= now {
            due.push(Due {
                registry_id: reg.id.clone(),
                environment_id: reg.environment_id.clone(),
                credential_id: reg.credential.credential_id.clone(),
                address: reg.address.clone(),
                access_key_id: keys.access_key_id.clone(),
                secret_access_key: keys.secret_access_key.clone(),
                keys_version: reg.ecr_keys_version,
                last_error: reg.last_refresh_error.clone(),
            });
        }
    }
    slots.retain(|id, _| seen.contains(id.as_str()));
    due
}

/// Returns the moment half of a token's lifetime has passed.
fn half_life(issued: SystemTime, expires: SystemTime) -> SystemTime {
    let lifetime = expires.duration_since(issued).unwrap_or_default();
    issued + lifetime / 2
}

/// Returns the wait after `failures` failures: doubling from the minimum up
/// to the maximum, then spread by ±20% so many registries do not retry in step.
fn backoff(settings: &RefresherSettings, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = settings
        .min_backoff
        .saturating_mul(1 << doublings)
        .min(settings.max_backoff);
    let jitter = rand::thread_rng().gen_range(0.8..=1.2);
    base.mul_f64(jitter)
}

/// Fetches and records one token; the error is a message without secrets.
async fn refresh(
    app: &App,
    source: &dyn TokenSource,
    settings: &RefresherSettings,
    due: &Due,
) -> Result<(), String> {
    let endpoint = endpoint_for(&due.address, settings.endpoint_override.as_deref())
        .ok_or_else(|| format!("{} is not an ECR address", due.address))?;
    let ctx = SecretContext {
        environment_id: &due.environment_id,
        registry_id: &due.registry_id,
        credential_id: &due.credential_id,
        version: due.keys_version,
        field: "secret_access_key",
    };
    let still_live = || {
        let state = app.projection().read();
        state
            .registry(&due.registry_id)
            .is_some_and(|r| r.credential.credential_id == due.credential_id)
    };
    let secret = app
        .data_keys()
        .open(&ctx, &due.secret_access_key, still_live)
        .await
        .map_err(|_| "the access keys cannot be opened (see the server log)".to_owned())?
        .ok_or_else(|| "the access keys were replaced or deleted meanwhile".to_owned())?;
    let secret = SecretString::from(
        String::from_utf8(secret.to_vec())
            .map_err(|_| "the secret access key is not text".to_owned())?,
    );
    let issued_at = app.now();
    let token = source
        .fetch(&FetchRequest {
            endpoint: &endpoint,
            access_key_id: &due.access_key_id,
            secret_access_key: &secret,
            now: issued_at,
        })
        .await
        .map_err(|e| e.0)?;
    if token.expires_at <= issued_at {
        return Err("ECR returned a token that had already expired (check the clock)".to_owned());
    }
    let command = Command::RecordEcrToken {
        registry_id: due.registry_id.clone(),
        credential_id: due.credential_id.clone(),
        token: token.password,
        issued_at,
        expire_time: token.expires_at,
    };
    let executed = audited(app, due, "ecr.refresh", &command)
        .await
        .map_err(|()| "the audit log cannot be written: the token is not recorded".to_owned())?;
    match executed {
        Ok(_) => {
            tracing::info!(registry_id = %due.registry_id, address = %due.address, "ECR token refreshed");
            Ok(())
        }
        // The keys changed or the registry went away meanwhile: nothing to do.
        Err(crate::app::Error::Domain(_)) => Ok(()),
        Err(e) => Err(format!("recording the token failed: {e}")),
    }
}

async fn record_failure(app: &App, due: &Due, message: String) {
    let command = Command::RecordEcrRefreshFailure {
        registry_id: due.registry_id.clone(),
        credential_id: due.credential_id.clone(),
        message,
    };
    match audited(app, due, "ecr.refresh_failure", &command).await {
        Ok(Err(e)) => tracing::debug!(error = %e, "could not record an ECR refresh failure"),
        Ok(Ok(_)) => {}
        // Not audited, not recorded; the server's log says why.
        Err(()) => {}
    }
}

/// Executes the refresher's own command, audited like a caller's: the
/// request entry first (no change without it, `Err(())`), then the
/// outcome (a failure there is counted; the change is made already).
async fn audited(
    app: &App,
    due: &Due,
    rpc: &'static str,
    command: &Command,
) -> Result<crate::app::Result<crate::app::Executed>, ()> {
    let mut entry = Entry::new("request", rpc, app.now());
    entry.caller = Caller {
        token_id: Principal::system().token_id,
        role: "admin",
        ..Caller::default()
    };
    entry.environment_id.clone_from(&due.environment_id);
    entry.registry = due.address.to_string();
    entry.registry_id.clone_from(&due.registry_id);
    entry.credential_id.clone_from(&due.credential_id);
    app.audit().write(&entry).map_err(|_| ())?;
    let executed = app
        .execute(&Principal::system(), "", &[], || command.clone())
        .await;
    entry.phase = "response";
    entry.time = Entry::new("", "", app.now()).time;
    match &executed {
        Ok(done) => {
            entry.decision = "accepted";
            entry.revision = Some(done.revision);
        }
        Err(_) => entry.decision = "refused",
    }
    let _ = app.audit().write(&entry);
    Ok(executed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_due_at_half_their_lifetime() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            half_life(t0, t0 + Duration::from_secs(12 * 3600)),
            t0 + Duration::from_secs(6 * 3600)
        );
        assert_eq!(
            half_life(t0, t0 - Duration::from_secs(1)),
            t0,
            "an expired token is due now"
        );
    }

    #[test]
    fn backoff_doubles_within_bounds_with_jitter() {
        let s = RefresherSettings::default();
        for failures in 1..40 {
            let b = backoff(&s, failures);
            let base = s
                .min_backoff
                .saturating_mul(1 << (failures - 1).min(16))
                .min(s.max_backoff);
            assert!(
                b >= base.mul_f64(0.8) && b <= base.mul_f64(1.2),
                "{failures}: {b:?}"
            );
        }
        assert!(backoff(&s, 1) < Duration::from_secs(7));
        assert!(backoff(&s, 30) >= Duration::from_secs(240));
    }
}
