//! Watch cursors: one per subscriber, reading the log from its own position
//! (never a broadcast whose laggards silently lose messages). A cursor turns
//! the events of one environment, and the settings, into changes without
//! secrets (R9), each at the log position that resume tokens name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use super::{App, Error, Result};
use crate::domain::access::Principal;
use crate::domain::error::Error as Rule;
use crate::domain::event::{Recorded, Stream};
use crate::domain::state::State;
pub use crate::projection::Change;
use crate::projection::{watched, Applied};
use crate::store::payload;

/// Records a cursor reads per step.
const STEP: usize = 256;

/// A change at its log position: shared by every watcher when it comes
/// from the projection's recent window, this cursor's own when it was read
/// from the log.
#[derive(Debug, Clone)]
pub enum Item {
    /// From the recent window: the projection noted the change once, and
    /// its encoding is shared.
    Shared(Arc<Applied>),
    /// Read and folded from the log by this cursor.
    Own {
        /// The position a resume token names.
        position: u64,
        /// The change.
        change: Change,
    },
}

/// A change as a cursor hands it over: borrowed, so that handing a shared
/// change to a watcher touches no count of references that every other
/// watcher touches too.
#[derive(Debug, Clone, Copy)]
pub enum ItemRef<'a> {
    /// From the recent window.
    Shared(&'a Arc<Applied>),
    /// Read and folded from the log by this cursor.
    Own {
        /// The position a resume token names.
        position: u64,
        /// The change.
        change: &'a Change,
    },
}

impl<'a> ItemRef<'a> {
    /// Returns the position a resume token names.
    pub fn position(self) -> u64 {
        match self {
            ItemRef::Shared(applied) => applied.recorded.position,
            ItemRef::Own { position, .. } => position,
        }
    }

    /// Returns the change for the environment `environment_id`.
    pub fn change(self, environment_id: &str) -> Option<&'a Change> {
        match self {
            ItemRef::Shared(applied) => applied.change_for(environment_id),
            ItemRef::Own { change, .. } => Some(change),
        }
    }

    fn to_owned(self) -> Item {
        match self {
            ItemRef::Shared(applied) => Item::Shared(Arc::clone(applied)),
            ItemRef::Own { position, change } => Item::Own {
                position,
                change: change.clone(),
            },
        }
    }
}

impl Item {
    /// Returns the item borrowed.
    pub fn as_ref(&self) -> ItemRef<'_> {
        match self {
            Item::Shared(applied) => ItemRef::Shared(applied),
            Item::Own { position, change } => ItemRef::Own {
                position: *position,
                change,
            },
        }
    }

    /// Returns the position a resume token names.
    pub fn position(&self) -> u64 {
        match self {
            Item::Shared(applied) => applied.recorded.position,
            Item::Own { position, .. } => *position,
        }
    }

    /// Returns the change for the environment `environment_id`.
    pub fn change<'a>(&'a self, environment_id: &str) -> Option<&'a Change> {
        match self {
            Item::Shared(applied) => applied.change_for(environment_id),
            Item::Own { change, .. } => Some(change),
        }
    }
}

/// A subscriber's place in the log.
#[derive(Debug)]
pub struct Cursor {
    app: App,
    environment_id: String,
    position: u64,
    /// Per registry stream, the fold of that stream up to the cursor, built
    /// on first use from the stream and then kept up to date event by event.
    views: HashMap<String, State>,
}

/// Where a watch starts.
#[derive(Debug)]
pub struct WatchStart {
    /// The cursor, positioned after the initial state.
    pub cursor: Cursor,
    /// The initial state, when asked for: registries and settings at the
    /// cursor's position.
    pub initial: Option<Vec<Change>>,
}

impl App {
    /// Starts a watch of `environment_id`: from `resume_token` when given,
    /// else now (after an initial snapshot when `initial` is set).
    pub fn watch(
        &self,
        who: &Principal,
        environment_id: &str,
        resume_token: &str,
        initial: bool,
    ) -> Result<WatchStart> {
        let env = who.scope(environment_id)?.to_owned();
        let state = self.projection.read();
        if state.environment(&env).is_none() {
            return Err(Rule::NotFound {
                what: "environment",
                id: env,
            }
            .into());
        }
        let (position, initial) = if resume_token.is_empty() {
            // A cursor at the projection's position reads the changes the
            // projection notes in its recent window, and folds nothing itself.
            let snapshot = initial.then(|| snapshot(&state, &env));
            (state.position(), snapshot)
        } else {
            if initial {
                return Err(Rule::invalid(
                    "send_initial_state",
                    "cannot be combined with resume_token: resume continues where the last stream ended",
                )
                .into());
            }
            (self.parse_token(resume_token)?, None)
        };
        drop(state);
        Ok(WatchStart {
            cursor: Cursor {
                app: self.clone(),
                environment_id: env,
                position,
                views: HashMap::new(),
            },
            initial,
        })
    }

    /// Waits, like `reach`, until this replica has applied the position a
    /// resume token names: a token taken on another replica of the same
    /// log may be ahead of this one for a moment. A token that is not this
    /// log's is left for `watch` to refuse.
    pub async fn reach_token(&self, token: &str, deadline: Option<Duration>) -> Result<()> {
        if token.is_empty() {
            return Ok(());
        }
        let Ok(position) = self.token_position(token) else {
            return Ok(());
        };
        if position > self.projection.position() {
            // The head this replica knows may be older than the token.
            let _ = self.log.refresh_head().await;
            self.reach(position, deadline).await?;
        }
        Ok(())
    }

    /// Returns the opaque resume token for a position of this log.
    pub fn token(&self, position: u64) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("v1:{}:{position}", self.log.log_id()))
    }

    fn parse_token(&self, token: &str) -> Result<u64> {
        let position = self.token_position(token)?;
        if position > self.log.head() {
            return Err(Error::from(Rule::FailedPrecondition(
                "resume_token is ahead of this log: list the registries again and watch without a token"
                    .to_owned(),
            )));
        }
        Ok(position)
    }

    /// Returns the position a token of this log names.
    fn token_position(&self, token: &str) -> Result<u64> {
        let relist = |why: &str| {
            Error::from(Rule::FailedPrecondition(format!(
                "resume_token {why}: list the registries again and watch without a token"
            )))
        };
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| relist("is not a token of this service"))?;
        let mut parts = text.splitn(3, ':');
        let (Some("v1"), Some(log_id), Some(position)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(relist("is not a token of this service"));
        };
        if log_id != self.log.log_id() {
            return Err(relist("belongs to another installation's log"));
        }
        position
            .parse()
            .map_err(|_| relist("is not a token of this service"))
    }
}

fn snapshot(state: &State, env: &str) -> Vec<Change> {
    let mut out: Vec<Change> = state
        .registries_in(env, "")
        .map(|r| Change::Registry(Box::new(r.clone())))
        .collect();
    out.push(Change::Settings(state.settings().clone()));
    out
}

impl Cursor {
    /// Returns the position of the last record the cursor has passed.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads the next records up to the durable head and returns the
    /// changes among them; empty when the cursor is at the head.
    ///
    /// Records near the head come decoded from the projection's recent
    /// window, shared by all watchers; older ones are read from the log.
    pub async fn next(&mut self) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut take = |item: ItemRef<'_>| {
            items.push(item.to_owned());
            true
        };
        if self.next_recent(&mut take).is_none() {
            self.next_logged(&mut take).await?;
        }
        Ok(items)
    }

    /// Hands the changes of the records after the cursor, in order, to
    /// `take` until it returns false, passing each record handed over (and
    /// every record that is no change for this environment); the cursor
    /// stops after the change `take` refused more after. Reads the
    /// projection's recent window only, and only its changes for this
    /// environment, through the window's index: `None` when the window
    /// cannot tell what follows the cursor, which [`Cursor::next_logged`]
    /// then reads from the log.
    pub fn next_recent(&mut self, mut take: impl FnMut(ItemRef<'_>) -> bool) -> Option<()> {
        let passed = self.app.projection.visit_changes(
            &self.environment_id,
            self.position + 1,
            STEP,
            |a| take(ItemRef::Shared(a)),
        )?;
        self.position = self.position.max(passed);
        // The projection noted each change: no fold of this cursor's own,
        // whose views would now fall behind, so they go.
        self.views.clear();
        Some(())
    }

    /// Like [`Cursor::next_recent`], from the log: reads at most a step of
    /// records after the cursor (never past what the projection applied)
    /// and folds the changes among them.
    pub async fn next_logged(
        &mut self,
        mut take: impl FnMut(ItemRef<'_>) -> bool + Send,
    ) -> Result<()> {
        let from = self.position + 1;
        // Never past what the projection applied: the watch checks its
        // caller against the projection before sending, so a revocation
        // must be applied before what follows it is read.
        let applied = self.app.projection.position();
        if from > applied {
            return Ok(());
        }
        let max = usize::try_from(applied - from + 1)
            .unwrap_or(usize::MAX)
            .min(STEP);
        for envelope in self.app.log.read(from, max).await? {
            let recorded = payload::decode(&envelope)?;
            let change = self.change(&recorded).await?;
            self.position = recorded.position;
            if let Some(change) = change {
                let more = take(ItemRef::Own {
                    position: recorded.position,
                    change: &change,
                });
                if !more {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Returns the change `recorded` makes for this cursor's environment,
    /// folding its registry stream in this cursor's views.
    async fn change(&mut self, recorded: &Recorded) -> Result<Option<Change>> {
        let Some(stream) = Stream::parse(&recorded.stream) else {
            return Ok(None);
        };
        let ours = match &stream {
            Stream::Tokens => false,
            other => other
                .environment_id()
                .is_none_or(|env| env == self.environment_id),
        };
        if !ours {
            return Ok(None);
        }
        let view = match stream {
            Stream::Registry { .. } => Some(self.view(&recorded.stream, recorded).await?),
            _ => None,
        };
        Ok(watched(recorded, |id| view.and_then(|v| v.registry(id)).cloned()).map(|(_, c)| c))
    }

    /// Returns the stream's fold including `recorded`: the stream is read
    /// once, on the cursor's first event of it; later events apply in place.
    async fn view(&mut self, stream: &str, recorded: &Recorded) -> Result<&State> {
        use std::collections::hash_map::Entry;
        match self.views.entry(stream.to_owned()) {
            Entry::Occupied(entry) => {
                let state = entry.into_mut();
                state.apply(recorded);
                Ok(state)
            }
            Entry::Vacant(entry) => {
                let state = self
                    .app
                    .fold_streams(&[stream.to_owned()], recorded.position)
                    .await?;
                Ok(entry.insert(state))
            }
        }
    }

    /// Returns the environment watched.
    pub fn environment_id(&self) -> &str {
        &self.environment_id
    }
}
