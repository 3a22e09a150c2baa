//! Commands: `execute` decides against the projection, appends with
//! expected versions (deciding again after a lost race), and answers a
//! retry of a request id from the log, authorized again; the answer is the
//! object as the command's commit left it.

use super::{App, Error, Executed, Result, View};
use crate::domain::access::Principal;
use crate::domain::command::Command;
use crate::domain::decide::{authorize, decide, Decision, Outcome};
use crate::domain::error::Error as Rule;
use crate::domain::event::Event;
use crate::domain::quota;
use crate::domain::state::State;
use crate::store::{self, payload, Commit, StreamAppend};

/// How often at most a command is decided again after losing a race on
/// its stream. Every race has a winner, so callers racing on one object
/// all get through within as many rounds as there are of them; the bound
/// (with [`COMMIT_WAIT`] for all rounds together) only stops a caller that
/// keeps losing to a stream of newcomers, with ABORTED.
const MAX_ATTEMPTS: usize = 64;

/// The longest a command waits for its commit to be durable and applied
/// (or a replayed one's to be applied) before it answers UNAVAILABLE, so a
/// log that cannot be read back (a shared database gone mid-commit) never
/// holds a call past its deadline. The commit goes on; a retry with the
/// same request id answers its outcome.
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

fn outcome_unknown() -> Error {
    Error::Unavailable(format!(
        "the write's outcome is not known within {} s (the log cannot be read back now); retry with the same request_id for its answer",
        COMMIT_WAIT.as_secs()
    ))
}

impl App {
    /// Executes a command. `make` builds it (it is called again on a retry
    /// after a conflict, with the same ids). A non-empty `request_id` makes
    /// the call idempotent: a retry of the same `request` (the request's
    /// bytes, which the log keeps only as a keyed fingerprint) returns the
    /// first result; a different request with the same id is refused.
    pub async fn execute(
        &self,
        who: &Principal,
        request_id: &str,
        request: &[u8],
        make: impl Fn() -> Command,
    ) -> Result<Executed> {
        check_request_id(request_id)?;
        if let Some(record) = self.log.find_request(&who.token_id, request_id).await? {
            return self
                .replay_request(who, &make(), request_id, request, record)
                .await;
        }
        let fingerprint = self.kek.fingerprint(&[request]);
        let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let mut sealer = self.keys.sealer();
            let command = make();
            let name = command.name();
            let decision = {
                let state = self.projection.read();
                decide(&state, who, command, now, &mut sealer)
                    .and_then(|d| quota::check(&state, &d, &self.quotas).map(|()| d))
            };
            let decision = decision.inspect_err(|e| {
                tracing::debug!(command = name, actor = %who.token_id, error = %e, "command refused");
            })?;
            let destroyed = destroyed(&decision);
            let commit = Commit {
                appends: decision
                    .appends
                    .iter()
                    .map(|a| StreamAppend {
                        stream: a.stream.clone(),
                        expected_version: a.expected_version,
                        events: a.events.iter().map(payload::encode).collect(),
                    })
                    .collect(),
                actor: who.token_id.clone(),
                request_id: request_id.to_owned(),
                request_fingerprint: fingerprint.to_vec(),
                time: now,
                keys: store::KeyChanges {
                    created: self.keys.wrap_new(&sealer),
                    destroyed: destroyed.clone(),
                },
            };
            match self.append(commit, sealer, destroyed).await? {
                Ok(recorded) => {
                    let last = recorded.last().map_or(0, |e| e.position);
                    tracing::info!(command = name, actor = %who.token_id, position = last, "command recorded");
                    let view = self.view(&decision.outcome, &decision, last).await?;
                    return Ok(Executed {
                        view,
                        revision: last,
                    });
                }
                Err(store::Error::Conflict { stream, actual, .. }) => {
                    // Decide again once the projection holds whatever won
                    // the race, which may still have been on its way to
                    // disk when this commit was checked.
                    let caught_up = self.projection.wait_for_stream(&stream, actual);
                    if tokio::time::timeout(COMMIT_WAIT, caught_up).await.is_err() {
                        return Err(outcome_unknown());
                    }
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                }
                Err(store::Error::DuplicateRequest { record }) => {
                    return self
                        .replay_request(who, &make(), request_id, request, record)
                        .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict)
    }

    /// Appends a commit and keeps the data keys in memory in step with it,
    /// in a task of its own: a caller that goes away mid-way (a cancelled
    /// or timed-out call) cannot stop the keys' bookkeeping after a commit
    /// that stands. On success the projection has applied the commit when
    /// this returns; the outer error is the task's failure.
    async fn append(
        &self,
        commit: Commit,
        sealer: super::keys::NewKeys,
        destroyed: Vec<String>,
    ) -> Result<std::result::Result<Vec<store::Envelope>, store::Error>> {
        let (log, keys, projection) = (
            std::sync::Arc::clone(&self.log),
            self.keys.clone(),
            self.projection.clone(),
        );
        let task = tokio::spawn(async move {
            let appended = log.append(commit).await;
            match &appended {
                Ok(recorded) => {
                    // Once applied, a pull that reads a destroyed key from
                    // the store sees it is not live and does not keep it.
                    projection
                        .wait_for(recorded.last().map_or(0, |e| e.position))
                        .await;
                    keys.committed(&sealer, &destroyed);
                }
                // Whatever the outcome, forgetting is safe: live keys are
                // read from the key store again.
                Err(_) => keys.forget(&destroyed),
            }
            appended
        });
        match tokio::time::timeout(COMMIT_WAIT, task).await {
            Ok(joined) => joined.map_err(|e| {
                Error::Storage(store::Error::storage(format!(
                    "the append task failed: {e}"
                )))
            }),
            // The task goes on: the commit stands or fails on its own.
            Err(_) => Err(outcome_unknown()),
        }
    }

    /// Answers a retry: the view as of the first commit of the request.
    ///
    /// The caller is authorized exactly as on a first call: its role must
    /// allow the command, and the object answered must be in its scope.
    async fn replay_request(
        &self,
        who: &Principal,
        command: &Command,
        request_id: &str,
        request: &[u8],
        record: store::RequestRecord,
    ) -> Result<Executed> {
        authorize(who, command)?;
        if !self
            .kek
            .fingerprint_matches(&[request], &record.fingerprint)
        {
            return Err(Error::RequestReused(request_id.to_owned()));
        }
        let count =
            usize::try_from(record.last_position - record.first_position + 1).unwrap_or(usize::MAX);
        let envelopes = self.log.read(record.first_position, count).await?;
        let mut outcome = Outcome::Removed;
        for e in &envelopes {
            let r = payload::decode(e)?;
            outcome = match r.event {
                Event::EnvironmentCreated { environment_id, .. } => {
                    Outcome::Environment(environment_id)
                }
                Event::RegistryCreated { registry_id, .. }
                | Event::CredentialReplaced { registry_id, .. }
                | Event::RegistryActivated { registry_id }
                | Event::RegistryDeactivated { registry_id }
                | Event::RegistryVerified { registry_id, .. } => Outcome::Registry(registry_id),
                Event::SettingsUpdated { .. } => Outcome::Settings,
                Event::TokenCreated { token_id, .. } => Outcome::Token(token_id),
                // A deletion's answer is empty; the refresher's events carry
                // no request id, so no retry ever names them.
                Event::EnvironmentDeleted { .. }
                | Event::RegistryDeleted { .. }
                | Event::TokenRevoked { .. }
                | Event::EcrTokenRefreshed { .. }
                | Event::EcrRefreshFailed { .. } => continue,
            };
        }
        let decision = Decision {
            appends: Vec::new(),
            outcome: outcome.clone(),
        };
        let applied = self.projection.wait_for(record.last_position);
        if tokio::time::timeout(COMMIT_WAIT, applied).await.is_err() {
            return Err(outcome_unknown());
        }
        let view = self
            .view_at(&outcome, &decision, record.last_position, &envelopes)
            .await?;
        let environment = match &view {
            View::Environment(e) => Some(e.id.as_str()),
            View::Registry(r) => Some(r.environment_id.as_str()),
            View::Token(t) => t.environment_id.as_deref(),
            View::Settings(_) | View::Removed => None,
        };
        if let Some(environment) = environment {
            if !who.sees(environment) {
                return Err(Rule::NotFound {
                    what: "environment",
                    id: environment.to_owned(),
                }
                .into());
            }
        }
        Ok(Executed {
            view,
            revision: record.last_position,
        })
    }

    async fn view(&self, outcome: &Outcome, decision: &Decision, position: u64) -> Result<View> {
        if let Some(view) = self.view_from_projection(outcome, decision) {
            return Ok(view);
        }
        self.view_at(outcome, decision, position, &[]).await
    }

    /// The answer straight from the projection, which has applied the
    /// commit, when no later commit touched the streams it wrote: the
    /// projection then holds the object exactly as the commit left it, and
    /// no stream needs reading back from the log. `None` otherwise.
    fn view_from_projection(&self, outcome: &Outcome, decision: &Decision) -> Option<View> {
        let mut left: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for a in decision.appends.iter().filter(|a| !a.events.is_empty()) {
            let version = a.expected_version + a.events.len() as u64;
            let v = left.entry(a.stream.as_str()).or_default();
            *v = (*v).max(version);
        }
        let state = self.projection.read();
        if left.is_empty() || left.iter().any(|(s, v)| state.stream_version(s) != *v) {
            return None;
        }
        match view_of(&state, outcome) {
            // Gone from the projection through another stream: fold.
            View::Removed if *outcome != Outcome::Removed => None,
            view => Some(view),
        }
    }

    /// Folds the streams the outcome lives in up to `position`, so the
    /// answer shows the object as that commit left it.
    async fn view_at(
        &self,
        outcome: &Outcome,
        decision: &Decision,
        position: u64,
        commit: &[store::Envelope],
    ) -> Result<View> {
        let mut streams: Vec<String> = decision
            .appends
            .iter()
            .filter(|a| !a.events.is_empty())
            .map(|a| a.stream.clone())
            .collect();
        streams.extend(commit.iter().map(|e| e.stream.clone()));
        streams.dedup();
        let state = self.fold_streams(&streams, position).await?;
        Ok(view_of(&state, outcome))
    }
}

/// The object `outcome` names, as `state` holds it.
fn view_of(state: &State, outcome: &Outcome) -> View {
    match outcome {
        Outcome::Environment(id) => state
            .environment(id)
            .cloned()
            .map_or(View::Removed, View::Environment),
        Outcome::Registry(id) => state
            .registry(id)
            .cloned()
            .map_or(View::Removed, |r| View::Registry(Box::new(r))),
        Outcome::Settings => View::Settings(state.settings().clone()),
        Outcome::Token(id) => state.token(id).cloned().map_or(View::Removed, View::Token),
        Outcome::Removed => View::Removed,
    }
}

impl App {
    /// Folds the records of `streams` up to and including `up_to`, in log
    /// order: the objects those streams hold, as that position left them.
    pub(super) async fn fold_streams(&self, streams: &[String], up_to: u64) -> Result<State> {
        let mut records = Vec::new();
        for stream in streams {
            for e in self.log.read_stream(stream, up_to).await? {
                records.push(payload::decode(&e)?);
            }
        }
        records.sort_by_key(|r| r.position);
        let mut state = State::default();
        for r in &records {
            state.apply(r);
        }
        Ok(state)
    }
}

/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Checks a request id: at most 128 bytes of `[A-Za-z0-9._:-]`.
pub(super) fn check_request_id(request_id: &str) -> Result<()> {
    if request_id.len() > MAX_REQUEST_ID_LEN {
        return Err(Rule::invalid(
            "request_id",
            format!(
                "is {} bytes long; the most is {MAX_REQUEST_ID_LEN}",
                request_id.len()
            ),
        )
        .into());
    }
    if let Some(c) = request_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(Rule::invalid(
            "request_id",
            format!("contains {c:?}; use only letters, digits and . _ : -"),
        )
        .into());
    }
    Ok(())
}

/// Returns the credentials a decision destroys (R7, R10).
fn destroyed(decision: &Decision) -> Vec<String> {
    decision
        .appends
        .iter()
        .flat_map(|a| &a.events)
        .filter_map(|e| match e {
            Event::CredentialReplaced {
                previous_credential_id,
                ..
            } => Some(previous_credential_id.clone()),
            Event::RegistryDeleted { credential_id, .. } => Some(credential_id.clone()),
            _ => None,
        })
        .collect()
}
