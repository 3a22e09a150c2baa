//! `--audit-log`: a JSON line for every mutation (its request before it is
//! decided, its outcome before the answer leaves) and for every answer that
//! hands out a credential; user names only as the key's HMAC; and an audit
//! log that cannot be written refuses hand-outs and changes while reads
//! without secrets go on.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::{custom, free_port, http_get, sample, Fixture, TestServer};
use registrar::pb;
use serde_json::Value;
use tonic::Code;

const PASSWORD: &str = "Audit-Pw-7f3c91";
const USER: &str = "audit-user";

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn find<'a>(entries: &'a [Value], phase: &str, rpc_suffix: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| e["phase"] == phase && e["rpc"].as_str().unwrap().ends_with(rpc_suffix))
        .collect()
}

#[tokio::test]
async fn mutations_and_hand_outs_are_written_before_their_answers_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let path = log.clone();
    let server = TestServer::start_with(move |c| c.audit_log = Some(path.clone())).await;
    let mut f = Fixture::with_server(server, pb::Orchestration::Kubernetes).await;
    let reg = f
        .admin
        .add_registry(custom(&f.env, "r.example.com", USER, PASSWORD))
        .await;
    let refused = f
        .admin
        .reg
        .create_registry(custom(&f.env, "https://bad.example.com", USER, PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    f.admin
        .set_settings("", &["r.example.com", "anon.example.com"])
        .await;
    let mut agent = f.agent().await;

    let allowed = agent.resolve("", "r.example.com/team/app:1").await.unwrap();
    common::allowed(&allowed);
    // Written before the answer left: it is there the moment the call returns.
    let now = lines(&log);
    let handouts = find(&now, "handout", "/ResolvePull");
    assert_eq!(handouts.len(), 1, "{now:#?}");
    let h = handouts[0];
    assert_eq!(h["decision"], "allowed");
    assert_eq!(h["environment_id"], f.env.as_str());
    assert_eq!(h["image"], "r.example.com/team/app:1");
    assert_eq!(h["resolved_registry"], "r.example.com");
    assert_eq!(h["registry_id"], reg.id.as_str());
    assert_eq!(h["credential_id"], reg.credential_id.as_str());
    assert_eq!(h["caller"]["role"], "agent");
    assert_eq!(h["caller"]["environment_id"], f.env.as_str());
    assert_eq!(h["code"], "OK");
    assert!(h["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{h}");
    let hmac = h["username_hmac"].as_str().unwrap().to_owned();

    agent.resolve("", "anon.example.com/app").await.unwrap();
    agent.resolve("", "other.example.com/app").await.unwrap();
    agent
        .pull
        .get_pull_secret(pb::GetPullSecretRequest::default())
        .await
        .unwrap();

    let entries = lines(&log);
    // Every mutation: a request entry before anything, then its outcome.
    let requests = find(&entries, "request", "/CreateRegistry");
    let responses = find(&entries, "response", "/CreateRegistry");
    assert_eq!((requests.len(), responses.len()), (2, 2), "{entries:#?}");
    assert_eq!(responses[0]["decision"], "accepted");
    assert_eq!(responses[0]["code"], "OK");
    assert_eq!(responses[0]["registry_id"], reg.id.as_str());
    assert_eq!(responses[0]["credential_id"], reg.credential_id.as_str());
    assert!(responses[0]["revision"].as_u64().unwrap() > 0);
    assert_eq!(responses[0]["caller"]["role"], "admin");
    assert_eq!(responses[0]["username_hmac"], hmac.as_str());
    assert_eq!(responses[1]["decision"], "refused");
    assert_eq!(responses[1]["code"], "INVALID_ARGUMENT");
    let position = |e: &Value| entries.iter().position(|x| x == e).unwrap();
    assert!(position(requests[0]) < position(responses[0]));
    assert_eq!(find(&entries, "response", "/UpdateSettings").len(), 1);
    assert_eq!(find(&entries, "response", "/CreateToken").len(), 1);
    assert_eq!(find(&entries, "response", "/CreateEnvironment").len(), 1);

    let pulls = find(&entries, "handout", "/ResolvePull");
    let decisions: Vec<&str> = pulls
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["allowed", "anonymous", "denied"]);
    assert_eq!(pulls[2]["deny_reason"], "not_whitelisted");
    let secret = find(&entries, "handout", "/GetPullSecret");
    assert_eq!(secret.len(), 1);
    assert_eq!(secret[0]["credentials"][0]["registry_id"], reg.id.as_str());
    assert_eq!(secret[0]["credentials"][0]["username_hmac"], hmac.as_str());

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(PASSWORD), "a password in the audit log");
    assert!(!text.contains(USER), "a user name in the audit log");
    let token = f.admin.token(pb::Role::Agent, &f.env).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(token.rsplit('.').next().unwrap()),
        "a token secret in the audit log"
    );

    // A caller without a valid token leaves the RPC, the peer and the code,
    // nothing of what it sent; an admin's fields are cut to 256 bytes.
    let mut stranger = f.server.clients_with(Some("rgr.nobody.nothing")).await;
    let long = format!("{}.example.com", "x".repeat(4000));
    let refused = stranger
        .reg
        .create_registry(custom(&f.env, &long, USER, PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    f.admin
        .reg
        .create_registry(custom(&f.env, &long, USER, PASSWORD))
        .await
        .unwrap_err();
    let entries = lines(&log);
    let strangers: Vec<&Value> = entries
        .iter()
        .filter(|e| e["caller"].get("token_id").is_none())
        .collect();
    assert_eq!(strangers.len(), 2, "{strangers:#?}");
    assert!(strangers.iter().all(|e| e.get("registry").is_none()));
    assert_eq!(strangers[1]["code"], "UNAUTHENTICATED");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().all(|l| l.len() < 2048),
        "an entry kept a long field whole"
    );

    // The operator's check of a known user name.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["audit-hmac", "--data-dir"])
        .arg(f.server.data_dir())
        .arg(USER)
        .env_remove("REGISTRAR_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), hmac);
}

#[tokio::test]
async fn an_unwritable_audit_log_refuses_hand_outs_and_changes_but_not_plain_reads() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("audit.log");
    let current: Arc<Mutex<PathBuf>> = Arc::new(Mutex::new(good));
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let path = Arc::clone(&current);
    let server = TestServer::start_with(move |c| {
        c.audit_log = Some(path.lock().unwrap().clone());
        c.metrics_listen = Some(metrics);
    })
    .await;
    let mut f = Fixture::with_server(server, pb::Orchestration::Cattle).await;
    f.registry("r.example.com", USER, PASSWORD).await;
    f.admin
        .set_settings("", &["r.example.com", "anon.example.com"])
        .await;
    let token = f.admin.token(pb::Role::Agent, &f.env).await;

    // Every write to /dev/full fails with ENOSPC, as a full disk does.
    *current.lock().unwrap() = PathBuf::from("/dev/full");
    f.server.restart().await;
    let mut admin = f.server.admin().await;
    let mut agent = f.server.clients_with(Some(&token)).await;

    let refused = agent.resolve("", "r.example.com/app").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("audit log"), "{refused:?}");
    assert!(!refused.message().contains(PASSWORD));
    let refused = agent
        .pull
        .get_host_config(pb::GetHostConfigRequest {
            format: pb::HostConfigFormat::K3s as i32,
            include_auth: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let refused = admin
        .reg
        .create_registry(custom(&f.env, "new.example.com", USER, PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);

    // Nothing changed, and what hands out no secret still answers.
    let names: Vec<String> = admin
        .list(&f.env)
        .await
        .into_iter()
        .map(|r| r.address)
        .collect();
    assert_eq!(names, ["r.example.com"]);
    let anonymous = agent.resolve("", "anon.example.com/app").await.unwrap();
    common::allowed(&anonymous);
    let denied = agent.resolve("", "other.example.com/app").await.unwrap();
    common::denied(&denied);

    let (_, scrape) = http_get(metrics, "/metrics").await;
    // Three refusals and two best-effort entries (the anonymous and the
    // denied pull) that could not be written either.
    assert_eq!(
        sample(&scrape, "registrar_audit_failures_total", ""),
        Some(5.0)
    );
}
