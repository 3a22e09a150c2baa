//! `--metrics-listen`: the scrape after known traffic holds the gRPC server
//! metrics under go-grpc-prometheus' names and registrar's own, with the
//! counts that traffic makes, and no address, username, image or secret.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use common::{custom, free_port, http_get, sample, Fixture, TestServer};
use registrar::pb;
use tonic::Code;

const PULL: &str = r#"grpc_service="registrar.v1.PullService",grpc_method="ResolvePull""#;

async fn scrape(addr: SocketAddr) -> String {
    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    text
}

#[tokio::test]
async fn a_scrape_counts_calls_pulls_commits_and_streams_and_names_no_secret() {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = TestServer::start_with(move |c| c.metrics_listen = Some(addr)).await;
    let mut f = Fixture::with_server(server, pb::Orchestration::Cattle).await;
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let reg = f
        .admin
        .add_registry(pb::CreateRegistryRequest {
            expire_time: Some(expires.into()),
            ..custom(&f.env, "r.example.com", "metrics-user", "metrics-Pw-1")
        })
        .await;
    f.admin
        .set_settings("", &["r.example.com", "anon.example.com"])
        .await;
    let mut agent = f.agent().await;

    // 3 allowed with a credential, 2 anonymous, 1 denied, 1 refused call.
    let mut last = 0;
    for _ in 0..3 {
        last = agent
            .resolve("", "r.example.com/team/app:1")
            .await
            .unwrap()
            .revision;
    }
    for _ in 0..2 {
        agent.resolve("", "anon.example.com/app").await.unwrap();
    }
    let denied = agent.resolve("", "other.example.com/app").await.unwrap();
    common::denied(&denied);
    let refused = agent
        .pull
        .resolve_pull(pb::ResolvePullRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    let mut watch = agent
        .pull
        .watch(pb::WatchRequest {
            send_initial_state: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().expect("the initial state");

    let text = scrape(addr).await;
    let get = |name: &str, labels: &str| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
    };
    let unary = format!(r#"grpc_type="unary",{PULL}"#);
    assert_eq!(get("grpc_server_started_total", &unary), 7.0);
    assert_eq!(
        get(
            "grpc_server_handled_total",
            &format!(r#"{unary},grpc_code="OK""#)
        ),
        6.0
    );
    assert_eq!(
        get(
            "grpc_server_handled_total",
            &format!(r#"{unary},grpc_code="InvalidArgument""#)
        ),
        1.0
    );
    assert_eq!(get("grpc_server_msg_received_total", &unary), 7.0);
    assert_eq!(get("grpc_server_msg_sent_total", &unary), 6.0);
    assert_eq!(get("grpc_server_handling_seconds_count", &unary), 7.0);
    let watch_labels =
        r#"grpc_type="server_stream",grpc_service="registrar.v1.PullService",grpc_method="Watch""#;
    assert_eq!(get("grpc_server_started_total", watch_labels), 1.0);
    assert!(get("grpc_server_msg_sent_total", watch_labels) >= 1.0);

    let pulls = |result: &str| {
        sample(
            &text,
            "registrar_resolve_pull_total",
            &format!(r#"orchestration="cattle",result="{result}""#),
        )
    };
    assert_eq!(pulls("allowed"), Some(3.0));
    assert_eq!(pulls("anonymous"), Some(2.0));
    assert_eq!(pulls("not_whitelisted"), Some(1.0));
    assert_eq!(get("registrar_log_head_position", ""), last as f64);
    assert_eq!(get("registrar_replica_lag_positions", ""), 0.0);
    // The first admin token, the environment, the registry, the settings
    // and the agent token: five commits at least, the first one included.
    assert!(get("registrar_commits_total", "") >= 5.0);
    assert!(get("registrar_commit_batch_size_count", "") >= 1.0);
    assert!(get("registrar_flush_seconds_count", "") >= 1.0);
    assert_eq!(get("registrar_append_conflicts_total", ""), 0.0);
    assert_eq!(get("registrar_watch_streams", ""), 1.0);
    let expiry = expires
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert_eq!(
        get(
            "registrar_credential_expiry_timestamp_seconds",
            &format!(r#"registry_id="{}""#, reg.id)
        ),
        expiry
    );
    assert_eq!(
        get(
            "registrar_build_info",
            &format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    for never in [
        "r.example.com",
        "anon.example.com",
        "team/app",
        "metrics-user",
        "metrics-Pw-1",
    ] {
        assert!(!text.contains(never), "the scrape names {never}");
    }

    // The stream's end is counted.
    drop(watch);
    let mut open = 1.0;
    for _ in 0..100 {
        open = sample(&scrape(addr).await, "registrar_watch_streams", "").unwrap();
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open, 0.0, "a closed watch stream is no longer counted");
}

#[tokio::test]
async fn the_metrics_listener_answers_only_metrics() {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let _server = TestServer::start_with(move |c| c.metrics_listen = Some(addr)).await;
    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{text}"
    );
    let (status, _) = http_get(addr, "/").await;
    assert_eq!(status, 404);
    let (status, _) = http_get(addr, "/metrics/../admin").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_metrics_address_in_use_stops_the_start_with_its_name() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = registrar::config::ServeConfig::for_dir(dir.path().join("data"));
    config.metrics_listen = Some(addr);
    let Err(err) = registrar::testing::Running::start(config, Default::default()).await else {
        panic!("the start fails");
    };
    let message = err.to_string();
    assert!(
        message.contains("--metrics-listen") && message.contains(&addr.to_string()),
        "{message}"
    );
}
