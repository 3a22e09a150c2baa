//! HistoryService.ListEvents: an environment's changes newest first, with
//! the fields that changed and never a secret; pages that walk the whole
//! history once; the environment's members and admins only.

mod common;

use common::{custom, Clients, Fixture};
use registrar::pb;
use tonic::Code;

const PASSWORD: &str = "History-Pw-5c2e";

async fn all(c: &mut Clients, env: &str, registry: &str, page_size: i32) -> Vec<pb::HistoryEvent> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    for _ in 0..100 {
        let page = c
            .history
            .list_events(pb::ListEventsRequest {
                environment_id: env.into(),
                registry_id: registry.into(),
                page_size,
                page_token,
                min_revision: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.events.len() <= page_size as usize);
        out.extend(page.events);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
    panic!("the pages never ended");
}

fn actions(events: &[pb::HistoryEvent]) -> Vec<pb::HistoryAction> {
    events.iter().map(|e| e.action()).collect()
}

#[tokio::test]
async fn an_environment_history_lists_its_changes_newest_first_without_secrets() {
    use pb::HistoryAction as A;
    let mut f = Fixture::new(pb::Orchestration::Cattle).await;
    let reg = f
        .admin
        .add_registry(custom(&f.env, "r.example.com", "first-user", PASSWORD))
        .await;
    // Another environment's changes stay out of this one's history.
    let other = f.admin.create_env("other", pb::Orchestration::Cattle).await;
    f.admin
        .add_registry(custom(&other, "elsewhere.example.com", "u", PASSWORD))
        .await;
    f.admin
        .reg
        .update_registry(pb::UpdateRegistryRequest {
            id: reg.id.clone(),
            username: "second-user".into(),
            password: PASSWORD.into(),
            insecure: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    f.admin
        .reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: reg.id.clone(),
            request_id: "deactivate-1".into(),
        })
        .await
        .unwrap();
    f.admin
        .reg
        .activate_registry(pb::ActivateRegistryRequest {
            id: reg.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    // A credential added at the same address replaces the current one (R7).
    let replaced = f
        .admin
        .add_registry(pb::CreateRegistryRequest {
            email: "new@example.com".into(),
            ..custom(&f.env, "r.example.com", "second-user", PASSWORD)
        })
        .await;
    f.admin.set_settings("", &["r.example.com"]).await;
    f.admin
        .reg
        .delete_registry(pb::DeleteRegistryRequest {
            id: reg.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    let events = all(&mut f.admin, &f.env, "", 50).await;
    assert_eq!(
        actions(&events),
        [
            A::RegistryDeleted,
            A::SettingsChanged,
            A::CredentialReplaced,
            A::RegistryActivated,
            A::RegistryDeactivated,
            A::RegistryEdited,
            A::RegistryCreated,
            A::EnvironmentCreated,
        ]
    );
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");
    assert!(events
        .iter()
        .all(|e| !e.actor.is_empty() && e.time.is_some()));
    let edited = &events[5];
    assert_eq!(edited.registry_id, reg.id);
    assert_eq!(edited.address, "r.example.com");
    assert_eq!(
        edited.changed_fields,
        ["credential_id", "username", "insecure"]
    );
    assert_eq!(events[4].request_id, "deactivate-1");
    assert_eq!(events[4].changed_fields, ["state"]);
    // The added credential came without `insecure`, which the edit had set.
    assert_eq!(
        events[2].changed_fields,
        ["credential_id", "email", "insecure"]
    );
    assert_eq!(events[2].credential_id, replaced.credential_id);
    assert_eq!(events[1].changed_fields, ["whitelist"]);
    let printed = format!("{events:?}");
    assert!(!printed.contains(PASSWORD), "a password in the history");
    assert!(!printed.contains("first-user") && !printed.contains("second-user"));

    // One registry's history; small pages walk it all, each event once.
    let one = all(&mut f.admin, &f.env, &reg.id, 50).await;
    assert_eq!(one.len(), 6);
    assert!(one.iter().all(|e| e.registry_id == reg.id));
    let paged = all(&mut f.admin, &f.env, "", 3).await;
    assert_eq!(paged, events);
}

#[tokio::test]
async fn members_read_their_own_environment_agents_and_strangers_do_not() {
    let mut f = Fixture::new(pb::Orchestration::Kubernetes).await;
    f.registry("r.example.com", "u", PASSWORD).await;
    let other = f.admin.create_env("other", pb::Orchestration::Cattle).await;

    let member = f.admin.token(pb::Role::Member, &f.env).await;
    let mut member = f.server.clients_with(Some(&member)).await;
    // A member may leave the environment out: the token names it.
    let own = all(&mut member, "", "", 50).await;
    assert_eq!(own.len(), 2);
    let refused = member
        .history
        .list_events(pb::ListEventsRequest {
            environment_id: other.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);

    let mut agent = f.agent().await;
    let refused = agent
        .history
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let refused = f
        .admin
        .history
        .list_events(pb::ListEventsRequest {
            environment_id: f.env.clone(),
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("page_token"), "{refused:?}");
    let refused = f
        .admin
        .history
        .list_events(pb::ListEventsRequest {
            environment_id: f.env.clone(),
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("page_size"), "{refused:?}");
}
