//! ECR token refresh (R14) against a real AWS mock: the moto server, started
//! on loopback by the test and stopped after. moto does not check
//! signatures and its tokens always expire on 2015-01-01, so the server runs
//! on a clock the test sets. Needs `moto_server` (`pip install 'moto[server]'`).

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::moto::Moto;
use common::{allowed, denied, TestServer};
use registrar::pb;
use registrar::server::Overrides;
use registrar::testing::ManualClock;

const ADDRESS: &str = "123456789012.dkr.ecr.us-west-2.amazonaws.com";
/// moto's token: `AWS:<account>-auth-token`.
const MOTO_PASSWORD: &str = "123456789012-auth-token";
/// moto's expiry: 2015-01-01T00:00:00Z.
const MOTO_EXPIRY: u64 = 1_420_070_400;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

async fn registry(c: &mut common::Clients, id: &str) -> pb::Registry {
    c.reg
        .get_registry(pb::GetRegistryRequest {
            id: id.into(),
            min_revision: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .registry
        .unwrap()
}

/// Polls a registry for up to 10 s until `check` holds.
async fn registry_until(
    c: &mut common::Clients,
    id: &str,
    check: impl Fn(&pb::Registry) -> bool,
) -> pb::Registry {
    for _ in 0..500 {
        let g = registry(c, id).await;
        if check(&g) {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "registry {id} did not reach the expected state within 10s: {:?}",
        registry(c, id).await
    );
}

/// Resolves for up to 10 s until the pull is allowed.
async fn allowed_soon(c: &mut common::Clients, env: &str, image: &str) -> pb::ResolvePullResponse {
    for _ in 0..500 {
        let r = c.resolve(env, image).await.unwrap();
        if matches!(
            r.decision,
            Some(pb::resolve_pull_response::Decision::Allowed(_))
        ) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not allowed within 10s: {:?}", c.resolve(env, image).await);
}

fn seconds(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map_or(0, |t| t.seconds)
}

#[tokio::test]
async fn an_ecr_registry_with_access_keys_gets_refreshed_tokens_from_the_aws_mock() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let moto = Moto::start(port).await;
    // Twelve hours before moto's fixed expiry.
    let clock = ManualClock::new(at(MOTO_EXPIRY - 12 * 3600));
    let (url, c) = (moto.url(), clock.clone());
    let server = TestServer::start_with_overrides(
        |config| config.ecr_poll_ms = 20,
        move || Overrides {
            ecr_endpoint: Some(url.clone()),
            clock: Some(Arc::new(c.clone())),
            ..Overrides::default()
        },
    )
    .await;
    let mut admin = server.admin().await;
    let env = admin.create_env("k", pb::Orchestration::Kubernetes).await;
    let reg = admin
        .add_registry(pb::CreateRegistryRequest {
            environment_id: env.clone(),
            kind: pb::RegistryKind::Ecr as i32,
            address: ADDRESS.into(),
            ecr: Some(pb::EcrCredentials {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            }),
            ..Default::default()
        })
        .await;
    let image = format!("{ADDRESS}/app:1");

    // The first token, without any other service: user AWS and moto's password.
    let r = allowed_soon(&mut admin, &env, &image).await;
    let credential = allowed(&r).credential.clone().unwrap();
    assert_eq!(
        (credential.username.as_str(), credential.password.as_str()),
        ("AWS", MOTO_PASSWORD)
    );
    assert_eq!(
        allowed(&r).expire_time.as_ref().unwrap().seconds as u64,
        MOTO_EXPIRY
    );
    let first = registry(&mut admin, &reg.id).await;

    // moto goes away at half life: the failure shows on the registry.
    moto.stop();
    clock.advance(Duration::from_secs(6 * 3600 + 1));
    let failed = registry_until(&mut admin, &reg.id, |g| !g.last_refresh_error.is_empty()).await;
    assert!(
        failed.last_refresh_error.contains("cannot reach"),
        "{}",
        failed.last_refresh_error
    );
    // The current token is still good until it expires.
    let r = admin.resolve(&env, &image).await.unwrap();
    assert_eq!(
        allowed(&r).credential.as_ref().unwrap().password,
        MOTO_PASSWORD
    );

    // moto is back: after the backoff the token is refreshed and the error cleared.
    let _moto = Moto::start(port).await;
    clock.advance(Duration::from_secs(10));
    let refreshed = registry_until(&mut admin, &reg.id, |g| g.last_refresh_error.is_empty()).await;
    assert!(
        seconds(&refreshed.update_time) > seconds(&first.update_time),
        "a new token was recorded"
    );

    // Past the expiry moto has nothing fresher: the token is never handed out.
    clock.set(at(MOTO_EXPIRY + 1));
    let r = admin.resolve(&env, &image).await.unwrap();
    assert_eq!(denied(&r).0, pb::DenyReason::CredentialExpired);
    let g = registry_until(&mut admin, &reg.id, |g| !g.last_refresh_error.is_empty()).await;
    assert!(
        g.last_refresh_error.contains("already expired"),
        "{}",
        g.last_refresh_error
    );
}
