//! Bounds on what one caller can make the server hold or send: registries
//! and CA bytes per environment, list pages and whole-environment answers
//! bounded in bytes. Over a bound: RESOURCE_EXHAUSTED naming it, and
//! nothing changes.

mod common;

use common::{assert_status, big_ca, custom, Fixture, TestServer};
use registrar::pb;
use tonic::Code;

#[tokio::test]
async fn an_environment_over_its_registry_quota_is_refused_and_unchanged() {
    let server = TestServer::start_with(|c| c.max_registries_per_environment = 2).await;
    let mut admin = server.admin().await;
    let env = admin.create_env("q", pb::Orchestration::Cattle).await;
    for host in ["a.io", "b.io"] {
        admin.add_registry(custom(&env, host, "u", "p")).await;
    }
    let status = assert_status(
        admin
            .reg
            .create_registry(custom(&env, "c.io", "u", "p"))
            .await,
        Code::ResourceExhausted,
        None,
    );
    assert!(
        status
            .message()
            .contains("--max-registries-per-environment"),
        "{status:?}"
    );
    assert_eq!(admin.list(&env).await.len(), 2);
    // A new credential for an address it has is still welcome.
    admin.add_registry(custom(&env, "a.io", "u", "p2")).await;
}

#[tokio::test]
async fn the_ca_bundles_of_an_environment_are_bounded() {
    let server = TestServer::start_with(|c| c.max_ca_bytes_per_environment = 3 * 64 * 1024).await;
    let mut admin = server.admin().await;
    let env = admin.create_env("q", pb::Orchestration::Cattle).await;
    let ca = big_ca();
    for host in ["a.io", "b.io", "c.io"] {
        admin
            .add_registry(pb::CreateRegistryRequest {
                ca_certificate_pem: ca.clone(),
                ..custom(&env, host, "u", "p")
            })
            .await;
    }
    let status = assert_status(
        admin
            .reg
            .create_registry(pb::CreateRegistryRequest {
                ca_certificate_pem: ca.clone(),
                ..custom(&env, "d.io", "u", "p")
            })
            .await,
        Code::ResourceExhausted,
        None,
    );
    assert!(
        status.message().contains("--max-ca-bytes-per-environment"),
        "{status:?}"
    );
    assert_eq!(admin.list(&env).await.len(), 3, "nothing changed");
}

#[tokio::test]
async fn list_pages_stay_under_a_mebibyte_and_lose_nothing() {
    let server = TestServer::start_with(|c| c.max_ca_bytes_per_environment = 8 * 1024 * 1024).await;
    let mut admin = server.admin().await;
    let env = admin.create_env("p", pb::Orchestration::Cattle).await;
    let ca = big_ca();
    let count = 40;
    for i in 0..count {
        admin
            .add_registry(pb::CreateRegistryRequest {
                ca_certificate_pem: ca.clone(),
                ..custom(&env, &format!("r{i:02}.io"), "u", "p")
            })
            .await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = admin
            .reg
            .list_registries(pb::ListRegistriesRequest {
                min_revision: 0,
                environment_id: env.clone(),
                page_size: 500,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        let bytes = prost::Message::encoded_len(&page);
        assert!(bytes <= 1024 * 1024 + 1024, "a page of {bytes} bytes");
        seen.extend(page.registries.into_iter().map(|r| r.address));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(pages > 1, "40 registries of 62 KiB take more than one page");
    let expected: Vec<String> = (0..count).map(|i| format!("r{i:02}.io")).collect();
    assert_eq!(seen, expected, "every registry once, in order");
}

#[tokio::test]
async fn a_pull_secret_too_large_for_one_answer_is_refused_by_name() {
    let Fixture {
        server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Kubernetes).await;
    let password = "p".repeat(8 * 1024);
    for i in 0..200 {
        admin
            .add_registry(custom(&env, &format!("r{i:03}.io"), "u", &password))
            .await;
    }
    let mut ag = server.agent(&mut admin, &env).await;
    let status = assert_status(
        ag.pull
            .get_pull_secret(pb::GetPullSecretRequest::default())
            .await,
        Code::ResourceExhausted,
        None,
    );
    assert!(status.message().contains("the pull secret"), "{status:?}");
    assert!(!status.message().contains(&password), "no secret echoed");
    // The environment keeps serving the answers that fit.
    let answer = ag.resolve("", "r000.io/app:1").await.unwrap();
    common::allowed(&answer);
}
