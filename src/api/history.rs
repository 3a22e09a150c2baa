//! HistoryService: an environment's changes, newest first, redacted.

use tonic::{Request, Response, Status};

use super::error::invalid;
use super::Api;
use crate::app::{Action, HistoryEntry};
use crate::pb;
use crate::timestamp::system_to_timestamp;

fn action(a: Action) -> pb::HistoryAction {
    match a {
        Action::EnvironmentCreated => pb::HistoryAction::EnvironmentCreated,
        Action::RegistryCreated => pb::HistoryAction::RegistryCreated,
        Action::CredentialReplaced => pb::HistoryAction::CredentialReplaced,
        Action::RegistryEdited => pb::HistoryAction::RegistryEdited,
        Action::RegistryActivated => pb::HistoryAction::RegistryActivated,
        Action::RegistryDeactivated => pb::HistoryAction::RegistryDeactivated,
        Action::RegistryDeleted => pb::HistoryAction::RegistryDeleted,
        Action::EcrTokenRefreshed => pb::HistoryAction::EcrTokenRefreshed,
        Action::EcrRefreshFailed => pb::HistoryAction::EcrRefreshFailed,
        Action::SettingsChanged => pb::HistoryAction::SettingsChanged,
        Action::RegistryVerified => pb::HistoryAction::RegistryVerified,
    }
}

fn event(e: HistoryEntry) -> pb::HistoryEvent {
    pb::HistoryEvent {
        position: e.position,
        time: Some(system_to_timestamp(e.time)),
        actor: e.actor,
        action: action(e.action) as i32,
        registry_id: e.registry_id,
        address: e.address,
        changed_fields: e.changed_fields.into_iter().map(str::to_owned).collect(),
        credential_id: e.credential_id,
        message: e.message,
        request_id: e.request_id,
    }
}

/// The page token: the position the next page starts below, as text. It
/// names no secret and any position is safe to ask for.
fn parse_token(token: &str) -> Result<Option<u64>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix('p')
        .and_then(|p| p.parse::<u64>().ok())
        .filter(|&p| p >= 1)
        .map(Some)
        .ok_or_else(|| invalid("page_token", "is not a token this service gave"))
}

#[tonic::async_trait]
impl pb::history_service_server::HistoryService for Api {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let who = self.principal(&request).await?;
        let revision = self.reach(&request, request.get_ref().min_revision).await?;
        let r = request.get_ref();
        let size = super::page_size(r.page_size)?;
        let before = parse_token(&r.page_token)?;
        // A token from a replica further ahead: wait until this one has
        // everything below it, so no event between is skipped.
        if let Some(before) = before {
            self.reach(&request, before - 1).await?;
        }
        let page = self
            .app
            .history(&who, &r.environment_id, &r.registry_id, before, size)
            .await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.entries.into_iter().map(event).collect(),
            next_page_token: page
                .next_before
                .map(|p| format!("p{p}"))
                .unwrap_or_default(),
            revision,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_are_checked() {
        assert_eq!(parse_token("").unwrap(), None);
        assert_eq!(parse_token("p42").unwrap(), Some(42));
        for bad in ["42", "p", "p0", "p-1", "px", "p18446744073709551616"] {
            let e = parse_token(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(e.message().contains("page_token"), "{bad}");
        }
    }
}
