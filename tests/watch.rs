//! Watch streams over gRPC: initial state then changes, exact resumption
//! across reconnects, stalled subscribers, bookmarks and shutdown.

mod common;

use std::time::Duration;

use common::{assert_status, big_ca, custom, Fixture, TestServer};
use registrar::pb;
use registrar::pb::watch_response::Event;
use tonic::Code;

type Stream = tonic::Streaming<pb::WatchResponse>;

async fn watch(
    c: &mut common::Clients,
    env: &str,
    token: &str,
    initial: bool,
) -> Result<Stream, tonic::Status> {
    c.pull
        .watch(pb::WatchRequest {
            min_revision: 0,
            environment_id: env.into(),
            resume_token: token.into(),
            send_initial_state: initial,
        })
        .await
        .map(|r| r.into_inner())
}

async fn next(s: &mut Stream) -> pb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("a message within 10s")
        .expect("no error")
        .expect("stream open")
}

/// Reads the next message that is not a periodic bookmark.
async fn next_change(s: &mut Stream) -> pb::WatchResponse {
    loop {
        let m = next(s).await;
        match &m.event {
            Some(Event::Bookmark(b)) if !b.initial_state_done => continue,
            _ => return m,
        }
    }
}

#[tokio::test]
async fn a_watch_sends_the_initial_state_then_every_change() {
    let Fixture {
        server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Cattle).await;
    let other = admin.create_env("o", pb::Orchestration::Cattle).await;
    admin
        .add_registry(custom(&env, "a.io", "u", "secret-a"))
        .await;
    admin.set_settings("a.io", &[]).await;
    let mut ag = server.agent(&mut admin, &env).await;
    let mut s = watch(&mut ag, "", "", true).await.unwrap();

    let first = next(&mut s).await;
    let Some(Event::RegistryChanged(r)) = &first.event else {
        panic!("{first:?}")
    };
    assert_eq!(r.address, "a.io");
    let Some(Event::SettingsChanged(settings)) = next(&mut s).await.event else {
        panic!()
    };
    assert_eq!(settings.default_registry, "a.io");
    let Some(Event::Bookmark(b)) = next(&mut s).await.event else {
        panic!()
    };
    assert!(b.initial_state_done);

    // Changes made elsewhere arrive in order; other environments' do not.
    admin.add_registry(custom(&other, "x.io", "u", "p")).await;
    let b = admin
        .add_registry(custom(&env, "b.io", "u", "secret-b"))
        .await;
    admin
        .reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: b.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    admin
        .reg
        .delete_registry(pb::DeleteRegistryRequest {
            id: b.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let m1 = next_change(&mut s).await;
    let m2 = next_change(&mut s).await;
    let m3 = next_change(&mut s).await;
    let Some(Event::RegistryChanged(created)) = m1.event else {
        panic!("{m1:?}")
    };
    assert_eq!(
        (created.address.as_str(), created.state),
        ("b.io", pb::RegistryState::Active as i32)
    );
    let Some(Event::RegistryChanged(deactivated)) = m2.event else {
        panic!("{m2:?}")
    };
    assert_eq!(deactivated.state, pb::RegistryState::Inactive as i32);
    let Some(Event::RegistryRemoved(removed)) = m3.event else {
        panic!("{m3:?}")
    };
    assert_eq!(
        (removed.id.as_str(), removed.address.as_str()),
        (b.id.as_str(), "b.io")
    );
    assert_ne!(m1.token, m2.token);
}

#[tokio::test]
async fn resuming_from_any_token_delivers_exactly_the_changes_after_it() {
    let Fixture {
        server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Cattle).await;
    let other = admin.create_env("o", pb::Orchestration::Cattle).await;

    // A reference watcher that never disconnects.
    let mut reference = watch(&mut admin, &env, "", true).await.unwrap();
    let start_token = loop {
        let m = next(&mut reference).await;
        if let Some(Event::Bookmark(b)) = &m.event {
            if b.initial_state_done {
                break m.token;
            }
        }
    };

    // Writers change both environments concurrently.
    const CHANGES: usize = 120;
    let admin_token = server.admin.clone();
    let writer = {
        let env = env.clone();
        let other = other.clone();
        let mut c = server.clients_with(Some(&admin_token)).await;
        tokio::spawn(async move {
            for i in 0..CHANGES {
                let target = if i % 3 == 0 { &other } else { &env };
                c.reg
                    .create_registry(custom(
                        target,
                        &format!("r{}.io", i % 7),
                        "u",
                        &format!("p{i}"),
                    ))
                    .await
                    .unwrap();
            }
        })
    };

    // The resuming watcher reads a few messages per connection, then reconnects.
    let expected_changes = (0..CHANGES).filter(|i| i % 3 != 0).count();
    let mut resumed = Vec::new();
    let mut token = start_token.clone();
    let mut seed = 7u64;
    while resumed.len() < expected_changes {
        let mut s = watch(&mut admin, &env, &token, false).await.unwrap();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let take = 1 + (seed >> 33) as usize % 9;
        for _ in 0..take {
            if resumed.len() == expected_changes {
                break;
            }
            let m = next_change(&mut s).await;
            token = m.token.clone();
            resumed.push(m);
        }
        drop(s);
    }
    writer.await.unwrap();

    let mut expected = Vec::new();
    while expected.len() < expected_changes {
        expected.push(next_change(&mut reference).await);
    }
    assert_eq!(resumed, expected, "none lost, none repeated, same order");
    let mut tokens: Vec<&String> = resumed.iter().map(|m| &m.token).collect();
    tokens.dedup();
    assert_eq!(tokens.len(), expected_changes, "one message per event");
}

#[tokio::test]
async fn foreign_or_broken_tokens_ask_to_relist() {
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    let mut ca = a.admin().await;
    let mut cb = b.admin().await;
    let env_a = ca.create_env("a", pb::Orchestration::Cattle).await;
    let env_b = cb.create_env("b", pb::Orchestration::Cattle).await;
    let mut s = watch(&mut ca, &env_a, "", true).await.unwrap();
    let token_a = next(&mut s).await.token;

    let status = assert_status(
        watch(&mut cb, &env_b, &token_a, false).await,
        Code::FailedPrecondition,
        None,
    );
    assert!(status.message().contains("list"), "{}", status.message());
    assert_status(
        watch(&mut cb, &env_b, "garbage!", false).await,
        Code::FailedPrecondition,
        None,
    );
    assert_status(
        watch(&mut ca, &env_a, &token_a, true).await,
        Code::InvalidArgument,
        Some("send_initial_state"),
    );
    assert_status(watch(&mut ca, "nope", "", true).await, Code::NotFound, None);
}

#[tokio::test]
async fn quiet_streams_get_bookmarks_that_resume() {
    let server = TestServer::start_with(|c| c.watch_bookmark_ms = 200).await;
    let mut admin = server.admin().await;
    let env = admin.create_env("w", pb::Orchestration::Cattle).await;
    let mut s = watch(&mut admin, &env, "", false).await.unwrap();
    let m = next(&mut s).await;
    let Some(Event::Bookmark(b)) = &m.event else {
        panic!("{m:?}")
    };
    assert!(!b.initial_state_done);
    admin.add_registry(custom(&env, "a.io", "u", "p")).await;
    let mut resumed = watch(&mut admin, &env, &m.token, false).await.unwrap();
    let Some(Event::RegistryChanged(r)) = next_change(&mut resumed).await.event else {
        panic!()
    };
    assert_eq!(r.address, "a.io");
}

/// Deactivates the registry when it is active, else activates it: one
/// change for its environment's watchers.
async fn toggle(admin: &mut common::Clients, id: &str, active: bool) {
    let id = id.to_owned();
    let request_id = String::new();
    if active {
        let r = pb::DeactivateRegistryRequest { id, request_id };
        admin.reg.deactivate_registry(r).await.unwrap();
    } else {
        let r = pb::ActivateRegistryRequest { id, request_id };
        admin.reg.activate_registry(r).await.unwrap();
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_ended_and_others_get_everything() {
    let server = TestServer::start_with(|c| {
        c.watch_stall_ms = 300;
        // The stalled stream and the reader: no room for a third.
        c.max_watches_per_token = 2;
    })
    .await;
    let mut admin = server.admin().await;
    let env = admin.create_env("w", pb::Orchestration::Cattle).await;
    let reg = admin
        .add_registry(pb::CreateRegistryRequest {
            ca_certificate_pem: big_ca(),
            ..custom(&env, "a.io", "u", "p")
        })
        .await;
    // Each connection its own: the stalled one must not hold back the reader.
    let mut stalled_client = server.admin().await;
    let mut stalled = watch(&mut stalled_client, &env, "", false).await.unwrap();
    let mut reader_client = server.admin().await;
    let mut reader = watch(&mut reader_client, &env, "", false).await.unwrap();
    const TOGGLES: usize = 300;
    let reading = tokio::spawn(async move {
        let mut got = 0;
        while got < TOGGLES {
            let m = next_change(&mut reader).await;
            assert!(matches!(m.event, Some(Event::RegistryChanged(_))));
            got += 1;
        }
        got
    });
    for i in 0..TOGGLES {
        toggle(&mut admin, &reg.id, i % 2 == 0).await;
    }
    assert_eq!(reading.await.unwrap(), TOGGLES);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // The stalled stream was ended without being read, and so gave its slot
    // back (as the finished reader did): the token may open two again.
    let mut reopened = Vec::new();
    for _ in 0..50 {
        match watch(&mut admin, &env, "", false).await {
            Ok(stream) => reopened.push(stream),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if reopened.len() == 2 {
            break;
        }
    }
    assert_eq!(reopened.len(), 2, "the stalled stream kept its slot");

    // The stalled stream holds a bounded backlog, then its end and the reason.
    let mut delivered = 0;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.message())
            .await
            .expect("ends")
        {
            Ok(Some(_)) => delivered += 1,
            Ok(None) => panic!("ended without a status after {delivered}"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("not read for 300ms; resume"),
        "{}",
        status.message()
    );
    assert!(
        delivered < TOGGLES,
        "the stalled stream was cut off ({delivered})"
    );
}

#[tokio::test]
async fn shutdown_ends_streams_with_unavailable_promptly() {
    let mut server = TestServer::start().await;
    let mut admin = server.admin().await;
    let env = admin.create_env("w", pb::Orchestration::Cattle).await;
    let mut s = watch(&mut admin, &env, "", true).await.unwrap();
    next(&mut s).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("prompt shutdown");
    assert!(started.elapsed() < Duration::from_secs(5));
    let status = loop {
        match s.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn deleting_the_environment_ends_its_watches() {
    let Fixture {
        server: _server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Cattle).await;
    let mut s = watch(&mut admin, &env, "", false).await.unwrap();
    admin
        .env
        .delete_environment(pb::DeleteEnvironmentRequest {
            id: env,
            request_id: String::new(),
        })
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("ended without a status"),
                Err(status) => break status,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Code::NotFound);
}

/// Reads until the stream ends with a status, within `limit`.
async fn end_status(s: &mut Stream, limit: Duration) -> tonic::Status {
    tokio::time::timeout(limit, async {
        loop {
            match s.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("ended without a status"),
                Err(status) => break status,
            }
        }
    })
    .await
    .expect("the stream ends in time")
}

#[tokio::test]
async fn revoking_a_token_ends_its_watches_within_a_second() {
    let Fixture {
        server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Cattle).await;
    let issued = admin
        .tokens
        .create_token(pb::CreateTokenRequest {
            role: pb::Role::Agent as i32,
            environment_id: env.clone(),
            description: "host".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut ag = server.clients_with(Some(&issued.token)).await;
    let mut s = watch(&mut ag, "", "", true).await.unwrap();
    // The initial state (the settings), then its closing bookmark.
    while !matches!(next(&mut s).await.event, Some(Event::Bookmark(b)) if b.initial_state_done) {}
    admin
        .tokens
        .revoke_token(pb::RevokeTokenRequest {
            token_id: issued.token_id,
        })
        .await
        .unwrap();
    // Nothing after the revocation reaches the revoked token.
    admin.add_registry(custom(&env, "after.io", "u", "p")).await;
    let status = end_status(&mut s, Duration::from_secs(1)).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");
}

#[tokio::test]
async fn an_ended_watch_gives_its_slot_back() {
    let server = TestServer::start_with(|c| c.max_watches_per_token = 1).await;
    let mut admin = server.admin().await;
    let doomed = admin.create_env("doomed", pb::Orchestration::Cattle).await;
    let kept = admin.create_env("kept", pb::Orchestration::Cattle).await;
    let mut s = watch(&mut admin, &doomed, "", false).await.unwrap();
    assert_status(
        watch(&mut admin, &kept, "", false).await,
        Code::ResourceExhausted,
        None,
    );
    admin
        .env
        .delete_environment(pb::DeleteEnvironmentRequest {
            id: doomed,
            request_id: String::new(),
        })
        .await
        .unwrap();
    let status = end_status(&mut s, Duration::from_secs(1)).await;
    assert_eq!(status.code(), Code::NotFound);
    // The slot is free again once the ended stream's task is gone.
    let mut reopened = None;
    for _ in 0..50 {
        match watch(&mut admin, &kept, "", false).await {
            Ok(stream) => {
                reopened = Some(stream);
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(reopened.is_some(), "the slot was never given back");
}

#[tokio::test]
async fn a_quiet_environments_watcher_is_not_ended_while_others_change() {
    // Streams left unread for 300 ms with changes for them are ended; a
    // quiet one gets no bookmark in this test's time to show it is read.
    let server = TestServer::start_with(|c| {
        c.watch_stall_ms = 300;
        c.watch_bookmark_ms = 60_000;
    })
    .await;
    let mut admin = server.admin().await;
    let quiet = admin.create_env("quiet", pb::Orchestration::Cattle).await;
    let busy = admin.create_env("busy", pb::Orchestration::Cattle).await;
    let reg = admin.add_registry(custom(&busy, "b.io", "u", "p")).await;
    let mut watcher = server.admin().await;
    let mut s = watch(&mut watcher, &quiet, "", false).await.unwrap();
    // Five stall timeouts of changes in the other environment.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut active = true;
    while tokio::time::Instant::now() < until {
        toggle(&mut admin, &reg.id, active).await;
        active = !active;
    }
    // The stream is still open, and its environment's next change is the
    // first thing it sends.
    admin.add_registry(custom(&quiet, "q.io", "u", "p")).await;
    let m = next(&mut s).await;
    let Some(Event::RegistryChanged(r)) = m.event else {
        panic!("{m:?}")
    };
    assert_eq!(r.address, "q.io");
}
