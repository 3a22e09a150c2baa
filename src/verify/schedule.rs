//! The background check: every `interval`, the current credential of each
//! registry whose credential pulls may use (active, not expired,
//! whitelisted; not an ECR registry with access keys, whose token refresh
//! is its check) is logged in with, as the system, and the result recorded
//! as its `last_verification`. A registry is due `interval` after its last
//! check, or after its last change when it has none. A few checks run at
//! once; on a shared database one replica at a time checks.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::task::JoinSet;

use crate::app::{App, Trigger};
use crate::audit::{Caller, Entry};
use crate::domain::access::Principal;
use crate::store::postgres::{Elector, Lease};

/// How the background check runs.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// Time between two checks of one registry; zero turns the check off.
    pub interval: Duration,
    /// Checks in progress at once.
    pub concurrency: usize,
}

/// Starts the background check, unless its interval is zero; it runs
/// until aborted. With an elector, only while this replica leads.
pub fn spawn(
    app: App,
    settings: ScheduleSettings,
    elector: Option<Elector>,
) -> Option<tokio::task::JoinHandle<()>> {
    if settings.interval.is_zero() {
        tracing::info!("the background credential check is off (--verify-interval 0)");
        return None;
    }
    Some(tokio::spawn(async move {
        let Some(elector) = elector else {
            return run(&app, &settings, None).await;
        };
        loop {
            let lease = elector.lead().await;
            tracing::info!("this replica checks credentials in the background");
            tokio::select! {
                () = run(&app, &settings, Some(&lease)) => return,
                () = lease.lost() => {}
            }
            tracing::warn!("lost the credential check lock; another replica takes over");
        }
    }))
}

/// How often the schedule is looked at: often enough for short intervals,
/// at most every 30 s.
fn poll(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

async fn run(app: &App, settings: &ScheduleSettings, lease: Option<&Lease>) {
    // When this replica last tried each credential (a try whose result
    // could not be recorded is not tried again before the interval).
    let mut tried: HashMap<String, SystemTime> = HashMap::new();
    loop {
        let due = due_now(app, settings.interval, &mut tried);
        let mut running = JoinSet::new();
        for (registry_id, environment_id, credential_id) in due {
            if let Some(lease) = lease {
                if !lease.held().await {
                    return;
                }
            }
            while running.len() >= settings.concurrency.max(1) {
                let _ = running.join_next().await;
            }
            tried.insert(credential_id.clone(), app.now());
            let app = app.clone();
            running.spawn(async move {
                check(&app, &registry_id, &environment_id, &credential_id).await;
            });
        }
        while running.join_next().await.is_some() {}
        tokio::time::sleep(poll(settings.interval)).await;
    }
}

/// Returns (registry, environment, credential) of each registry due.
fn due_now(
    app: &App,
    interval: Duration,
    tried: &mut HashMap<String, SystemTime>,
) -> Vec<(String, String, String)> {
    let now = app.now();
    let state = app.projection().read();
    let mut due = Vec::new();
    let mut live = std::collections::HashSet::new();
    for reg in state.all_registries() {
        let credential_id = &reg.credential.credential_id;
        live.insert(credential_id.clone());
        if reg.credential.ecr.is_some() || crate::app::check_sendable(&state, reg, now).is_err() {
            continue;
        }
        let last = reg
            .last_verification
            .as_ref()
            .map_or(reg.update_time, |v| v.time);
        let last = tried.get(credential_id).map_or(last, |t| last.max(*t));
        if last.checked_add(interval).is_some_and(|due| due <= now) {
            due.push((
                reg.id.clone(),
                reg.environment_id.clone(),
                credential_id.clone(),
            ));
        }
    }
    tried.retain(|id, _| live.contains(id));
    due
}

/// Checks one registry, audited like the refresher's work: the request
/// entry first (without it nothing is sent or recorded), then the outcome.
async fn check(app: &App, registry_id: &str, environment_id: &str, credential_id: &str) {
    let mut entry = Entry::new("request", "verify.background", app.now());
    entry.caller = Caller {
        token_id: Principal::system().token_id,
        role: "admin",
        ..Caller::default()
    };
    entry.environment_id = environment_id.to_owned();
    entry.registry_id = registry_id.to_owned();
    entry.credential_id = credential_id.to_owned();
    if app.audit().write(&entry).is_err() {
        return;
    }
    let done = app
        .verify_registry(
            &Principal::system(),
            "",
            &[],
            registry_id,
            Trigger::Background,
        )
        .await;
    entry.phase = "response";
    entry.time = Entry::new("", "", app.now()).time;
    match &done {
        Ok(executed) => {
            entry.decision = "accepted";
            entry.revision = Some(executed.revision);
            if let crate::app::View::Registry(reg) = &executed.view {
                if let Some(v) = reg.last_verification.as_ref().filter(|v| !v.ok) {
                    tracing::warn!(
                        registry_id,
                        address = %reg.address,
                        message = %v.message,
                        "a registry's credential failed its check"
                    );
                }
            }
        }
        Err(e) => {
            entry.decision = "refused";
            tracing::debug!(registry_id, error = %e, "a background check was not recorded");
        }
    }
    let _ = app.audit().write(&entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_looked_at_often_enough_and_not_too_often() {
        assert_eq!(poll(Duration::from_secs(6 * 3600)), Duration::from_secs(30));
        assert_eq!(poll(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(poll(Duration::from_millis(10)), Duration::from_millis(100));
    }
}
