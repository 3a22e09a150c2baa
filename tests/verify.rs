//! Credentials checked against registries, with registries and token
//! services played by small HTTP servers on 127.0.0.1 (the real registry,
//! Debian's docker-registry, is in tests/e2e_verify.rs): what may be sent
//! where, redirects, bounds, the record of each check (Watch, history,
//! metrics) and the background check.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::stub::{Answer, Asked, Silent, Stub};
use common::{assert_status, custom, free_port, http_get, sample, Fixture, TestServer};
use registrar::config::Interval;
use registrar::pb;
use tonic::Code;

const USER: &str = "alice";
const PASSWORD: &str = "Right-Pw-7";

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A registry asking for HTTP Basic with USER and PASSWORD.
fn basic_registry(asked: &Asked) -> Answer {
    if asked.path_and_query != "/v2/" {
        return Answer::status(404);
    }
    if asked.authorization.as_deref() == Some(basic(USER, PASSWORD).as_str()) {
        Answer::status(200).body("{}")
    } else {
        Answer::status(401).header("www-authenticate", r#"Basic realm="stub""#)
    }
}

/// A server whose background check runs every `interval` and whose logins
/// give up after 2 s.
async fn server(interval: Duration) -> TestServer {
    TestServer::start_with(move |c| {
        c.verify_interval = Interval(interval);
        c.verify_timeout_secs = 2;
    })
    .await
}

/// A plain-HTTP registry is insecure (R12): it is asked over TLS first,
/// then over HTTP.
fn insecure(
    env: &str,
    addr: SocketAddr,
    password: &str,
    verify: bool,
) -> pb::CreateRegistryRequest {
    pb::CreateRegistryRequest {
        insecure: true,
        verify,
        ..custom(env, &addr.to_string(), USER, password)
    }
}

/// The newest `n` history entries of a registry, newest first.
async fn history(f: &mut Fixture, registry_id: &str, n: i32) -> Vec<pb::HistoryEvent> {
    f.admin
        .history
        .list_events(pb::ListEventsRequest {
            environment_id: f.env.clone(),
            registry_id: registry_id.to_owned(),
            page_size: n,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

#[tokio::test]
async fn a_rejected_credential_is_refused_and_nothing_is_recorded() {
    let stub = Stub::start(None, basic_registry).await;
    let mut f = Fixture::with_server(server(Duration::ZERO).await, pb::Orchestration::Cattle).await;

    let wrong = f
        .admin
        .reg
        .create_registry(insecure(&f.env, stub.addr, "Wrong-Pw-3", true))
        .await;
    let status = assert_status(wrong, Code::FailedPrecondition, None);
    let expected = format!(
        "the registry rejected the credential: 401 from http://{}/v2/",
        stub.addr
    );
    assert!(status.message().contains(&expected), "{}", status.message());
    assert!(!status.message().contains("Wrong-Pw-3"));
    assert!(f.admin.list(&f.env).await.is_empty(), "nothing recorded");

    // The right password is recorded with the login's result, in the
    // same commit.
    let done = f
        .admin
        .reg
        .create_registry(insecure(&f.env, stub.addr, PASSWORD, true))
        .await
        .unwrap()
        .into_inner();
    let reg = done.registry.unwrap();
    let v = reg.last_verification.clone().expect("a verification");
    assert!(v.ok, "{v:?}");
    assert_eq!(v.message, "the registry accepted the credential (Basic)");
    let events = history(&mut f, &reg.id, 10).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].action(), pb::HistoryAction::RegistryVerified);
    assert_eq!(events[0].position, done.revision);
    assert_eq!(events[1].action(), pb::HistoryAction::RegistryCreated);
    assert_eq!(events[1].position + 1, done.revision);

    // An edit with a wrong password and verify leaves the credential as it was.
    let edit = f
        .admin
        .reg
        .update_registry(pb::UpdateRegistryRequest {
            id: reg.id.clone(),
            password: "Wrong-Pw-4".into(),
            verify: true,
            ..Default::default()
        })
        .await;
    let status = assert_status(edit, Code::FailedPrecondition, None);
    assert!(status.message().contains(&expected), "{}", status.message());
    let now = f.admin.list(&f.env).await;
    assert_eq!(now[0].credential_id, reg.credential_id, "not replaced");
    // Without verify the same edit is recorded, and the new credential has
    // no verification yet.
    let edited = f
        .admin
        .reg
        .update_registry(pb::UpdateRegistryRequest {
            id: reg.id.clone(),
            password: "Wrong-Pw-4".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .registry
        .unwrap();
    assert_ne!(edited.credential_id, reg.credential_id);
    assert_eq!(edited.last_verification, None);
}

#[tokio::test]
async fn verify_registry_records_the_result_and_watchers_history_and_metrics_see_it() {
    let stub = Stub::start(None, basic_registry).await;
    let port = free_port();
    let metrics: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = TestServer::start_with(move |c| {
        c.verify_interval = Interval(Duration::ZERO);
        c.metrics_listen = Some(metrics);
    })
    .await;
    let mut f = Fixture::with_server(server, pb::Orchestration::Cattle).await;
    let reg = f
        .admin
        .add_registry(insecure(&f.env, stub.addr, "Wrong-Pw-5", false))
        .await;
    assert_eq!(stub.hits(), 0, "no login without verify");
    let mut agent = f.agent().await;
    let mut watch = agent
        .pull
        .watch(pb::WatchRequest {
            environment_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let request = pb::VerifyRegistryRequest {
        id: reg.id.clone(),
        request_id: "check-1".into(),
    };
    let checked = f
        .admin
        .reg
        .verify_registry(request.clone())
        .await
        .unwrap()
        .into_inner();
    let v = checked
        .registry
        .as_ref()
        .unwrap()
        .last_verification
        .clone()
        .unwrap();
    assert!(!v.ok);
    assert!(
        v.message
            .contains("the registry rejected the credential: 401 from"),
        "{v:?}"
    );
    assert!(!v.message.contains("Wrong-Pw-5"));
    let hits = stub.hits();

    // Watchers get the registry with its result.
    let changed = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("a change within 10 s")
            .unwrap()
            .unwrap();
        if let Some(pb::watch_response::Event::RegistryChanged(r)) = m.event {
            break r;
        }
    };
    assert_eq!(changed.last_verification, Some(v.clone()));

    // A retry is answered from the log, without a second login.
    let again = f
        .admin
        .reg
        .verify_registry(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.revision, checked.revision);
    assert_eq!(stub.hits(), hits, "a retry logs in again");

    let events = history(&mut f, &reg.id, 1).await;
    assert_eq!(events[0].action(), pb::HistoryAction::RegistryVerified);
    assert_eq!(events[0].message, v.message);
    assert_eq!(events[0].changed_fields, vec!["last_verification"]);

    let (status, text) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &text,
            "registrar_registry_verifications_total",
            r#"trigger="on_demand",result="rejected""#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("Wrong-Pw-5") && !text.contains(USER));
}

#[tokio::test]
async fn a_stored_credential_is_sent_only_where_pulls_would_use_it() {
    let stub = Stub::start(None, basic_registry).await;
    let mut f = Fixture::with_server(server(Duration::ZERO).await, pb::Orchestration::Cattle).await;
    let reg = f
        .admin
        .add_registry(insecure(&f.env, stub.addr, PASSWORD, false))
        .await;
    let verify = |id: &str| pb::VerifyRegistryRequest {
        id: id.to_owned(),
        request_id: String::new(),
    };

    f.admin
        .reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: reg.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let r = f.admin.reg.verify_registry(verify(&reg.id)).await;
    let status = assert_status(r, Code::FailedPrecondition, None);
    assert!(
        status.message().contains("inactive"),
        "{}",
        status.message()
    );
    f.admin
        .reg
        .activate_registry(pb::ActivateRegistryRequest {
            id: reg.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    f.admin.set_settings("", &["quay.io"]).await;
    let r = f.admin.reg.verify_registry(verify(&reg.id)).await;
    let status = assert_status(r, Code::FailedPrecondition, None);
    assert!(
        status.message().contains("whitelist"),
        "{}",
        status.message()
    );
    f.admin.set_settings("", &[]).await;

    let mut agent = f.agent().await;
    assert_status(
        agent.reg.verify_registry(verify(&reg.id)).await,
        Code::PermissionDenied,
        None,
    );
    let other = f.admin.create_env("other", pb::Orchestration::Cattle).await;
    let member = f.admin.token(pb::Role::Member, &other).await;
    let mut member = f.server.clients_with(Some(&member)).await;
    assert_status(
        member.reg.verify_registry(verify(&reg.id)).await,
        Code::NotFound,
        None,
    );
    assert_status(
        f.admin.reg.verify_registry(verify("")).await,
        Code::InvalidArgument,
        Some("id"),
    );
    assert_eq!(stub.hits(), 0, "nothing was sent to the registry");

    let ok = f
        .admin
        .reg
        .verify_registry(verify(&reg.id))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.registry.unwrap().last_verification.unwrap().ok);
    assert!(stub.hits() > 0);

    // ECR registries with access keys are checked by their token refresh.
    let ecr = f
        .admin
        .reg
        .create_registry(pb::CreateRegistryRequest {
            environment_id: f.env.clone(),
            kind: pb::RegistryKind::Ecr as i32,
            address: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
            username: "AWS".into(),
            ecr: Some(pb::EcrCredentials {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            }),
            verify: true,
            ..Default::default()
        })
        .await;
    assert_status(ecr, Code::InvalidArgument, Some("verify"));
}

/// A registry with a Bearer challenge whose realm is `realm`, accepting
/// the token `good-token`.
fn bearer_registry(realm: String) -> impl Fn(&Asked) -> Answer + Send + Sync + 'static {
    move |asked| {
        if asked.authorization.as_deref() == Some("Bearer good-token") {
            return Answer::status(200).body("{}");
        }
        Answer::status(401).header(
            "www-authenticate",
            &format!(r#"Bearer realm="{realm}",service="stub-registry""#),
        )
    }
}

#[tokio::test]
async fn the_token_service_is_followed_only_to_its_own_host() {
    let tokens = Stub::start(None, |asked| {
        let path = asked.path_and_query.split('?').next().unwrap_or_default();
        let authorized = asked.authorization.as_deref() == Some(basic(USER, PASSWORD).as_str());
        match path {
            "/away" => {
                let port = asked.path_and_query.len(); // any port: never followed
                Answer::status(307).header("location", &format!("http://localhost:{port}/token"))
            }
            // A redirect names the whole target, query included.
            "/hop" => Answer::status(307).header(
                "location",
                &asked.path_and_query.replacen("/hop", "/token", 1),
            ),
            "/loop" => Answer::status(302).header("location", "/loop"),
            "/token" if authorized => {
                assert!(
                    asked.path_and_query.contains("service=stub-registry")
                        && asked.path_and_query.contains("account=alice"),
                    "{}",
                    asked.path_and_query
                );
                Answer::status(200).body(r#"{"token":"good-token","expires_in":60}"#)
            }
            "/token" => Answer::status(401),
            "/big" => Answer::status(200).body(vec![b' '; 100 * 1024]),
            _ => Answer::status(404),
        }
    })
    .await;
    let mut f = Fixture::with_server(server(Duration::ZERO).await, pb::Orchestration::Cattle).await;
    let mut check = async |path: &str, password: &str| {
        let registry = Stub::start(
            None,
            bearer_registry(format!("http://{}{path}", tokens.addr)),
        )
        .await;
        let r = f
            .admin
            .reg
            .create_registry(insecure(&f.env, registry.addr, password, true))
            .await;
        (r, registry.addr)
    };

    let (r, _) = check("/hop", PASSWORD).await;
    let v = r
        .unwrap()
        .into_inner()
        .registry
        .unwrap()
        .last_verification
        .unwrap();
    assert_eq!(
        v.message,
        format!(
            "the registry accepted the credential (a token from {})",
            tokens.addr
        )
    );

    let (r, _) = check("/token", "Wrong-Pw-6").await;
    let status = assert_status(r, Code::FailedPrecondition, None);
    let expected = format!(
        "the registry rejected the credential: 401 from http://{}/token",
        tokens.addr
    );
    assert!(status.message().contains(&expected), "{}", status.message());

    let (r, _) = check("/away", PASSWORD).await;
    let status = assert_status(r, Code::FailedPrecondition, None);
    assert!(
        status
            .message()
            .contains("a redirect to another host (localhost) is not followed"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("rejected"));

    let (r, _) = check("/loop", PASSWORD).await;
    let status = assert_status(r, Code::FailedPrecondition, None);
    assert!(
        status.message().contains("redirected more than 3 times"),
        "{}",
        status.message()
    );

    let (r, _) = check("/big", PASSWORD).await;
    let status = assert_status(r, Code::FailedPrecondition, None);
    assert!(
        status.message().contains("answered more than 65536 bytes"),
        "{}",
        status.message()
    );
    assert!(
        f.admin.list(&f.env).await.len() == 1,
        "only the accepted one"
    );
}

#[tokio::test]
async fn a_registry_that_is_not_insecure_is_never_asked_over_plain_http() {
    let (ca, cert, key) = common::test_pki("verify stub CA", &["127.0.0.1"]);
    let tokens = Stub::start(None, |_| {
        Answer::status(200).body(r#"{"token":"good-token"}"#)
    })
    .await;
    let registry = Stub::start(
        Some((&cert, &key)),
        bearer_registry(format!("http://{}/token", tokens.addr)),
    )
    .await;
    let mut f = Fixture::with_server(server(Duration::ZERO).await, pb::Orchestration::Cattle).await;
    let r = f
        .admin
        .reg
        .create_registry(pb::CreateRegistryRequest {
            ca_certificate_pem: ca.clone(),
            verify: true,
            ..custom(&f.env, &registry.addr.to_string(), USER, PASSWORD)
        })
        .await;
    let status = assert_status(r, Code::FailedPrecondition, None);
    assert!(
        status
            .message()
            .contains("plain HTTP is refused for a registry that is not insecure"),
        "{}",
        status.message()
    );
    assert_eq!(tokens.hits(), 0);

    // The plain-HTTP registry, not marked insecure, is asked over TLS only.
    let plain = Stub::start(None, basic_registry).await;
    let r = f
        .admin
        .reg
        .create_registry(pb::CreateRegistryRequest {
            verify: true,
            ..custom(&f.env, &plain.addr.to_string(), USER, PASSWORD)
        })
        .await;
    let status = assert_status(r, Code::FailedPrecondition, None);
    assert!(
        status
            .message()
            .starts_with(&format!("cannot reach https://{}/v2/", plain.addr)),
        "{}",
        status.message()
    );
    assert_eq!(plain.hits(), 0, "never asked over HTTP");
}

#[tokio::test]
async fn a_registry_that_never_answers_is_refused_within_the_bound() {
    let silent = Silent::start().await;
    let mut f = Fixture::with_server(server(Duration::ZERO).await, pb::Orchestration::Cattle).await;
    let started = Instant::now();
    let r = f
        .admin
        .reg
        .create_registry(insecure(&f.env, silent.addr, PASSWORD, true))
        .await;
    let status = assert_status(r, Code::FailedPrecondition, None);
    assert!(
        status.message().contains(&format!(
            "the login at {} did not finish within 2 s",
            silent.addr
        )),
        "{}",
        status.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(f.admin.list(&f.env).await.is_empty());
}

#[tokio::test]
async fn the_background_check_records_each_active_registry() {
    let stub = Stub::start(None, basic_registry).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let path = audit.clone();
    let server = TestServer::start_with(move |c| {
        c.verify_interval = Interval(Duration::from_secs(1));
        c.audit_log = Some(path.clone());
    })
    .await;
    let mut f = Fixture::with_server(server, pb::Orchestration::Cattle).await;
    let good = f
        .admin
        .add_registry(insecure(&f.env, stub.addr, PASSWORD, false))
        .await;
    let other = Stub::start(None, basic_registry).await;
    let inactive = f
        .admin
        .add_registry(insecure(&f.env, other.addr, PASSWORD, false))
        .await;
    f.admin
        .reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: inactive.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let checked = loop {
        let list = f.admin.list(&f.env).await;
        let reg = list.iter().find(|r| r.id == good.id).unwrap().clone();
        if reg.last_verification.is_some() {
            break reg;
        }
        assert!(Instant::now() < deadline, "no background check within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(checked.last_verification.unwrap().ok);
    let events = history(&mut f, &good.id, 1).await;
    assert_eq!(events[0].action(), pb::HistoryAction::RegistryVerified);
    assert_eq!(events[0].actor, "system");
    // Checked again after the interval.
    let first = events[0].position;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let events = history(&mut f, &good.id, 1).await;
        if events[0].position > first {
            break;
        }
        assert!(Instant::now() < deadline, "no second check within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(other.hits(), 0, "an inactive registry is not checked");
    let list = f.admin.list(&f.env).await;
    let inactive = list.iter().find(|r| r.id == inactive.id).unwrap();
    assert_eq!(inactive.last_verification, None);

    // Each try is audited as the system's, and only registries a pull
    // could use are tried: the inactive one is not even attempted.
    let entries: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["rpc"] == "verify.background")
        .collect();
    let tried = |id: &str, phase: &str| {
        entries
            .iter()
            .filter(|e| e["registry_id"] == id && e["phase"] == phase)
            .count()
    };
    assert!(tried(&good.id, "request") >= 2, "{entries:?}");
    assert!(tried(&good.id, "response") >= 2, "{entries:?}");
    assert_eq!(tried(&inactive.id, "request"), 0, "{entries:?}");
    assert!(!std::fs::read_to_string(&audit).unwrap().contains(PASSWORD));
}
