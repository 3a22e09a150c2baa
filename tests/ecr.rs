//! Built-in ECR token refresh (R13, R14) against an ECR API stand-in on
//! loopback that checks the request's signature header: the first token,
//! refresh at half life, an expired token denied while refreshes fail, and
//! recovery. `tests/e2e_ecr.rs` runs the same story against the moto server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{allowed, assert_status, denied, TestServer};
use registrar::pb;
use registrar::server::Overrides;
use registrar::testing::ManualClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const ADDRESS: &str = "123456789012.dkr.ecr.us-west-2.amazonaws.com";
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "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";

/// What the stand-in answers next.
#[derive(Debug, Clone)]
enum Answer {
    Token {
        password: String,
        expires_at: SystemTime,
    },
    Fail(u16),
}

/// An ECR API stand-in: answers GetAuthorizationToken and records requests.
#[derive(Clone)]
struct FakeEcr {
    url: String,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeEcr {
    async fn start(first: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Self {
            url,
            answer: Arc::new(Mutex::new(first)),
            requests: Arc::default(),
        };
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let f = f.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read the head and the body (Content-Length bytes).
                    loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                f.requests.lock().unwrap().push(text);
                                break;
                            }
                        }
                    }
                    let answer = f.answer.lock().unwrap().clone();
                    let (status, body) = match answer {
                        Answer::Token { password, expires_at } => {
                            let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
                            let at = expires_at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
                            (200, format!(r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{at},"proxyEndpoint":"https://{ADDRESS}"}}]}}"#))
                        }
                        Answer::Fail(status) => (status, r#"{"__type":"com.amazon#ServerException","message":"the service is unavailable"}"#.to_owned()),
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        fake
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

async fn setup(first: Answer) -> (TestServer, FakeEcr, ManualClock, String) {
    let fake = FakeEcr::start(first).await;
    let clock = ManualClock::new(t0());
    let (url, c) = (fake.url.clone(), clock.clone());
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
    let server = TestServer::start_with_overrides(
        move |config| {
            config.ecr_poll_ms = 20;
            config.metrics_listen = Some(metrics);
        },
        move || Overrides {
            ecr_endpoint: Some(url.clone()),
            clock: Some(Arc::new(c.clone())),
            ..Overrides::default()
        },
    )
    .await;
    let mut admin = server.admin().await;
    let env = admin.create_env("k", pb::Orchestration::Kubernetes).await;
    (server, fake, clock, env)
}

fn ecr_request(env: &str) -> pb::CreateRegistryRequest {
    pb::CreateRegistryRequest {
        environment_id: env.into(),
        kind: pb::RegistryKind::Ecr as i32,
        address: ADDRESS.into(),
        ecr: Some(pb::EcrCredentials {
            access_key_id: KEY_ID.into(),
            secret_access_key: SECRET_KEY.into(),
        }),
        ..Default::default()
    }
}

/// Resolves until `check` accepts the answer (the refresher works in the background).
async fn eventually(
    c: &mut common::Clients,
    env: &str,
    check: impl Fn(&pb::ResolvePullResponse) -> bool,
) -> pb::ResolvePullResponse {
    let image = format!("{ADDRESS}/app:1");
    for _ in 0..250 {
        let r = c.resolve(env, &image).await.unwrap();
        if check(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no matching answer within 5s: {:?}",
        c.resolve(env, &image).await
    );
}

fn password(r: &pb::ResolvePullResponse) -> Option<String> {
    match &r.decision {
        Some(pb::resolve_pull_response::Decision::Allowed(a)) => {
            a.credential.as_ref().map(|c| c.password.clone())
        }
        _ => None,
    }
}

#[tokio::test]
async fn access_keys_become_a_token_that_is_refreshed_at_half_life() {
    let twelve_hours = Duration::from_secs(12 * 3600);
    let (server, fake, clock, env) = setup(Answer::Token {
        password: "token-1".into(),
        expires_at: t0() + twelve_hours,
    })
    .await;
    let mut c = server.admin().await;
    let reg = c.add_registry(ecr_request(&env)).await;
    assert_eq!(reg.username, "AWS");
    assert_eq!(reg.ecr_access_key_id, KEY_ID);
    assert!(!format!("{reg:?}").contains("SECRETMARK"));

    let r = eventually(&mut c, &env, |r| password(r).as_deref() == Some("token-1")).await;
    let ok = allowed(&r);
    assert_eq!(ok.credential.as_ref().unwrap().username, "AWS");
    // The kubelet caches for at most half the remaining life.
    let Some(pb::pull_allowed::Orchestrator::Kubernetes(k)) = &ok.orchestrator else {
        panic!()
    };
    let provider: serde_json::Value =
        serde_json::from_str(&k.credential_provider_response).unwrap();
    assert_eq!(
        provider["cacheDuration"], "1m0s",
        "capped by the default for long lives"
    );
    // The request was signed for ECR in the address's region with the key id, never the secret.
    let requests = fake.requests.lock().unwrap().clone();
    assert!(
        requests[0].contains(&format!("Credential={KEY_ID}/")),
        "{}",
        requests[0]
    );
    assert!(requests[0].contains("/us-west-2/ecr/aws4_request"));
    assert!(requests[0].contains("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"));
    assert!(requests.iter().all(|r| !r.contains("SECRETMARK")));

    // Before half its life nothing is fetched; at half its life a new token is.
    fake.set(Answer::Token {
        password: "token-2".into(),
        expires_at: t0() + twelve_hours * 2,
    });
    clock.advance(Duration::from_secs(5 * 3600));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        password(&c.resolve(&env, &format!("{ADDRESS}/app")).await.unwrap()).as_deref(),
        Some("token-1")
    );
    clock.advance(Duration::from_secs(3600 + 1));
    eventually(&mut c, &env, |r| password(r).as_deref() == Some("token-2")).await;

    // Both refreshes are counted, and the token's expiry is exported.
    let (_, scrape) = common::http_get(server.config().metrics_listen.unwrap(), "/metrics").await;
    assert_eq!(
        common::sample(&scrape, "registrar_ecr_refresh_total", r#"result="ok""#),
        Some(2.0),
        "{scrape}"
    );
    let expiry = (t0() + twelve_hours * 2)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert_eq!(
        common::sample(
            &scrape,
            "registrar_credential_expiry_timestamp_seconds",
            &format!(r#"registry_id="{}""#, reg.id)
        ),
        Some(expiry)
    );
    assert!(!scrape.contains("SECRETMARK") && !scrape.contains("token-2"));
}

#[tokio::test]
async fn an_expired_token_is_denied_while_refresh_fails_and_recovery_follows() {
    let life = Duration::from_secs(3600);
    let (server, fake, clock, env) = setup(Answer::Token {
        password: "token-1".into(),
        expires_at: t0() + life,
    })
    .await;
    let mut c = server.admin().await;
    let reg = c.add_registry(ecr_request(&env)).await;
    eventually(&mut c, &env, |r| password(r).as_deref() == Some("token-1")).await;

    // ECR fails from now on; the token runs out.
    fake.set(Answer::Fail(503));
    clock.advance(life);
    let r = eventually(&mut c, &env, |r| {
        matches!(
            r.decision,
            Some(pb::resolve_pull_response::Decision::Denied(_))
        )
    })
    .await;
    let (reason, message) = denied(&r);
    assert_eq!(reason, pb::DenyReason::CredentialExpired);
    assert!(message.contains("expired"), "{message}");
    assert!(
        !format!("{r:?}").contains("token-1"),
        "an expired token is never handed out"
    );

    // The failure is visible on the registry, without secrets.
    let mut failed = None;
    for _ in 0..250 {
        let g = c
            .reg
            .get_registry(pb::GetRegistryRequest {
                id: reg.id.clone(),
                min_revision: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .registry
            .unwrap();
        if !g.last_refresh_error.is_empty() {
            failed = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = failed.expect("the refresh error is shown");
    let error = failed.last_refresh_error.clone();
    assert!(error.contains("503"), "{error:?}");
    assert!(!error.contains("SECRETMARK"));
    // It reads like a failed credential check.
    let v = failed.last_verification.expect("a verification");
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.message, error);

    // Failures back off: the next attempt waits (5 s ± 20% on the clock).
    let attempts = fake.requests.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.requests.lock().unwrap().len(),
        attempts,
        "no retry before the backoff"
    );

    // ECR recovers; after the backoff the registry gets a fresh token.
    fake.set(Answer::Token {
        password: "token-3".into(),
        expires_at: t0() + life * 13,
    });
    clock.advance(Duration::from_secs(7));
    eventually(&mut c, &env, |r| password(r).as_deref() == Some("token-3")).await;
    let g = c
        .reg
        .get_registry(pb::GetRegistryRequest {
            id: reg.id,
            min_revision: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .registry
        .unwrap();
    assert_eq!(g.last_refresh_error, "", "a success clears the error");
    let v = g.last_verification.expect("a verification");
    assert!(v.ok, "{v:?}");
    assert_eq!(v.message, "ECR issued a token for the access keys");
}

#[tokio::test]
async fn bad_ecr_keys_are_refused_and_keys_need_an_ecr_registry() {
    let (server, _fake, _clock, env) = setup(Answer::Fail(500)).await;
    let mut c = server.admin().await;
    let with = |id: &str, secret: &str| pb::CreateRegistryRequest {
        ecr: Some(pb::EcrCredentials {
            access_key_id: id.into(),
            secret_access_key: secret.into(),
        }),
        ..ecr_request(&env)
    };
    assert_status(
        c.reg.create_registry(with("short", "s")).await,
        Code::InvalidArgument,
        Some("ecr.access_key_id"),
    );
    assert_status(
        c.reg.create_registry(with(KEY_ID, "")).await,
        Code::InvalidArgument,
        Some("ecr.secret_access_key"),
    );
    let custom = pb::CreateRegistryRequest {
        kind: pb::RegistryKind::Custom as i32,
        address: "reg.io".into(),
        ..with(KEY_ID, "s")
    };
    assert_status(
        c.reg.create_registry(custom).await,
        Code::InvalidArgument,
        Some("ecr"),
    );
    let both = pb::CreateRegistryRequest {
        password: "tok".into(),
        ..with(KEY_ID, "s")
    };
    assert_status(
        c.reg.create_registry(both).await,
        Code::InvalidArgument,
        Some("password"),
    );
    assert!(c.list(&env).await.is_empty());

    // Until the first token arrives, pulls are denied rather than anonymous.
    c.reg.create_registry(ecr_request(&env)).await.unwrap();
    let r = c.resolve(&env, &format!("{ADDRESS}/app")).await.unwrap();
    assert_eq!(denied(&r).0, pb::DenyReason::CredentialExpired);
    // An edit needs the keys again.
    let id = c.list(&env).await[0].id.clone();
    let edit = pb::UpdateRegistryRequest {
        id,
        email: "ops@example.com".into(),
        ..Default::default()
    };
    assert_status(
        c.reg.update_registry(edit).await,
        Code::InvalidArgument,
        Some("ecr.secret_access_key"),
    );
}
