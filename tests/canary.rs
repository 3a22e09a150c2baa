//! Secret hygiene: the server binary runs with `RUST_LOG=trace` and JSON
//! log lines (each checked to be one JSON object) while a canary password
//! and a canary GCR key go through every kind of request, good and bad.
//! Its stdout and stderr, every error message returned, a metrics scrape,
//! the audit log and every byte of the data directory and key file are
//! then scanned for the canaries in plain, base64, hex and JSON-escaped
//! forms: zero hits. Only the authorised ResolvePull answers may carry
//! them, and are not scanned.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{custom, Clients};
use registrar::pb;

/// Every form of `secret` a careless log line or file might hold.
fn forms(secret: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("plain".to_owned(), secret.as_bytes().to_vec()),
        (
            "hex".to_owned(),
            secret
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        ),
    ];
    let json = serde_json::to_string(secret).unwrap();
    out.push((
        "json".to_owned(),
        json.trim_matches('"').as_bytes().to_vec(),
    ));
    // base64 of a substring depends on its alignment: all three, the part
    // that does not depend on the neighbouring bytes.
    for pad in 0..3 {
        let mut bytes = vec![b'x'; pad];
        bytes.extend_from_slice(secret.as_bytes());
        for (name, engine) in [
            ("base64", &base64::engine::general_purpose::STANDARD),
            ("base64url", &base64::engine::general_purpose::URL_SAFE),
        ] {
            let e = engine.encode(&bytes);
            out.push((
                format!("{name}+{pad}"),
                e.as_bytes()[4..e.len() - 4].to_vec(),
            ));
        }
    }
    out
}

fn hits(haystack: &[u8], where_: &str, secrets: &[(&str, String)], found: &mut Vec<String>) {
    for (label, secret) in secrets {
        for (form, needle) in forms(secret) {
            if haystack
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
            {
                found.push(format!("{label} ({form}) in {where_}"));
            }
        }
    }
}

fn scan_dir(dir: &Path, secrets: &[(&str, String)], found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan_dir(&path, secrets, found);
        } else {
            hits(
                &std::fs::read(&path).unwrap(),
                &path.display().to_string(),
                secrets,
                found,
            );
        }
    }
}

#[tokio::test]
async fn no_canary_reaches_logs_errors_or_disk_even_at_trace_level() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let password = format!("Canary\"/Pw+{id}");
    let gcr_secret = format!("GcrCanary{id}");
    let gcr_key = serde_json::json!({
        "type": "service_account",
        "client_email": "puller@p.iam.gserviceaccount.com",
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{gcr_secret}\n-----END PRIVATE KEY-----\n"),
        "private_key_id": "k1",
    })
    .to_string();
    let ecr_secret = format!("EcrCanary/{id}+K");
    // The member token's secret joins the list once the token exists.
    let mut secrets = vec![
        ("password", password.clone()),
        ("gcr key", gcr_secret.clone()),
        ("ecr secret access key", ecr_secret.clone()),
    ];

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics: std::net::SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
    // Inside the scanned directory: the audit trail is scanned too.
    let audit_log = dir.path().join("audit.log");
    // JSON lines: the format log collectors read, with every span field.
    let mut child = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
            "--metrics-listen",
            &metrics.to_string(),
            "--audit-log",
        ])
        .arg(&audit_log)
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut token = None;
    for _ in 0..200 {
        if let Ok(t) = std::fs::read_to_string(data.join("admin.token")) {
            if tonic::transport::Channel::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
                .is_ok()
            {
                token = Some(t.trim().to_owned());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = token.expect("the server starts");
    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = Clients::over(channel, common::Bearer::new(Some(&token)));

    let mut errors = Vec::new();
    let env = c.create_env("canary", pb::Orchestration::Kubernetes).await;
    let reg = c.add_registry(custom(&env, "r.io", "u", &password)).await;
    c.reg
        .create_registry(pb::CreateRegistryRequest {
            kind: pb::RegistryKind::Gcr as i32,
            address: "gcr.io".into(),
            username: "_json_key".into(),
            ..custom(&env, "", "", &gcr_key)
        })
        .await
        .unwrap();
    // Refused requests that carry the canaries.
    let bad = [
        custom(&env, "https://r.io", "u", &password),
        custom(&env, "r.io", "", &password),
        pb::CreateRegistryRequest {
            kind: pb::RegistryKind::Gcr as i32,
            address: "gcr.io".into(),
            username: "_json_key".into(),
            ..custom(
                &env,
                "",
                "",
                &format!("{{\"type\":\"user\",\"x\":\"{gcr_secret}\"}}"),
            )
        },
        pb::CreateRegistryRequest {
            ca_certificate_pem: format!(
                "-----BEGIN PRIVATE KEY-----\n{gcr_secret}\n-----END PRIVATE KEY-----\n"
            ),
            ..custom(&env, "s.io", "u", &password)
        },
        custom("no-such-environment", "r.io", "u", &password),
    ];
    // ECR keys in refused requests: a malformed access key id, keys for a
    // registry of another kind, and a password-only edit is no way to them.
    let ecr_keys = Some(pb::EcrCredentials {
        access_key_id: "not an access key".into(),
        secret_access_key: ecr_secret.clone(),
    });
    let bad_ecr = [pb::CreateRegistryRequest {
        kind: pb::RegistryKind::Ecr as i32,
        address: "123456789012.dkr.ecr.us-west-2.amazonaws.com".into(),
        ecr: ecr_keys.clone(),
        ..custom(&env, "", "", "")
    }];
    for request in bad.into_iter().chain(bad_ecr) {
        let status = c.reg.create_registry(request).await.unwrap_err();
        errors.push(format!("{} {:?}", status.message(), status.details()));
    }
    let status = c
        .reg
        .update_registry(pb::UpdateRegistryRequest {
            id: reg.id.clone(),
            password: password.clone(),
            ecr: ecr_keys,
            ..Default::default()
        })
        .await
        .unwrap_err();
    errors.push(format!("{} {:?}", status.message(), status.details()));
    // A member token: used, then revoked; its secret is never logged.
    let member = c.token(pb::Role::Member, &env).await;
    let member_secret = member.rsplit('.').next().unwrap().to_owned();
    secrets.push(("member token secret", member_secret));
    let mut m = Clients::over(
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
        common::Bearer::new(Some(&member)),
    );
    errors.push(format!("{:?}", m.list(&env).await));
    c.tokens
        .revoke_token(pb::RevokeTokenRequest {
            token_id: member.split('.').nth(1).unwrap().to_owned(),
        })
        .await
        .unwrap();
    let status = m
        .reg
        .list_registries(pb::ListRegistriesRequest {
            min_revision: 0,
            environment_id: env.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    errors.push(format!("{} {:?}", status.message(), status.details()));
    let status = c
        .reg
        .update_registry(pb::UpdateRegistryRequest {
            id: reg.id.clone(),
            address: "other.io".into(),
            password: password.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    errors.push(format!("{} {:?}", status.message(), status.details()));
    // Edits, a request id retry, reads, a watch, host files, resolve.
    let edit = pb::UpdateRegistryRequest {
        id: reg.id.clone(),
        password: format!("{password}-2"),
        request_id: "canary-edit".into(),
        ..Default::default()
    };
    c.reg.update_registry(edit.clone()).await.unwrap();
    c.reg.update_registry(edit).await.unwrap();
    let reused = pb::UpdateRegistryRequest {
        id: reg.id.clone(),
        password: format!("{password}-3"),
        request_id: "canary-edit".into(),
        ..Default::default()
    };
    let status = c.reg.update_registry(reused).await.unwrap_err();
    errors.push(status.message().to_owned());
    let listed = c.list(&env).await;
    errors.push(format!("{listed:?}"));
    let mut watch = c
        .pull
        .watch(pb::WatchRequest {
            min_revision: 0,
            environment_id: env.clone(),
            send_initial_state: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        errors.push(format!("{:?}", watch.message().await.unwrap()));
    }
    let files = c
        .pull
        .get_host_config(pb::GetHostConfigRequest {
            min_revision: 0,
            environment_id: env.clone(),
            format: pb::HostConfigFormat::K3s as i32,
            include_auth: false,
        })
        .await
        .unwrap();
    errors.push(format!("{:?}", files.into_inner()));
    let resolved = c.resolve(&env, "r.io/app").await.unwrap();
    let handed_out = common::allowed(&resolved)
        .credential
        .as_ref()
        .map(|c| c.password.clone());
    assert_eq!(
        handed_out,
        Some(format!("{password}-2")),
        "the authorised answer carries the password"
    );
    c.reg
        .delete_registry(pb::DeleteRegistryRequest {
            id: reg.id,
            request_id: String::new(),
        })
        .await
        .unwrap();
    drop(watch);

    // What a Prometheus scrape shows after all of it.
    let (status, scrape) = common::http_get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert!(scrape.contains("registrar_resolve_pull_total"), "{scrape}");
    errors.push(scrape);

    // Stop the server the way an operator does, then scan.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();

    let log = std::fs::read(&log_path).unwrap();
    assert!(
        log.len() > 10_000,
        "trace logging was on ({} bytes)",
        log.len()
    );
    let mut in_a_call = 0;
    for line in String::from_utf8_lossy(&log).lines() {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(
            parsed["timestamp"].is_string() && parsed["level"].is_string(),
            "{line}"
        );
        // A caller's command carries the call's span and its method.
        if parsed["fields"]["message"] == "command recorded"
            && parsed["fields"]["actor"] != "system"
        {
            let method = parsed["span"]["method"].as_str().unwrap_or_default();
            assert!(method.starts_with("/registrar.v1."), "{line}");
            in_a_call += 1;
        }
    }
    assert!(in_a_call > 0, "no command was logged");
    let mut found = Vec::new();
    hits(&log, "the server's output", &secrets, &mut found);
    for (i, e) in errors.iter().enumerate() {
        hits(e.as_bytes(), &format!("answer {i}"), &secrets, &mut found);
    }
    std::fs::remove_file(&log_path).unwrap();
    let audited = std::fs::read_to_string(&audit_log).unwrap();
    assert!(
        audited.contains("\"phase\":\"handout\""),
        "the hand-outs were audited: {audited}"
    );
    scan_dir(dir.path(), &secrets, &mut found);
    assert!(found.is_empty(), "{found:#?}");

    // The scan itself finds what it looks for.
    let mut control = Vec::new();
    hits(
        format!(
            "..{}..",
            base64::engine::general_purpose::STANDARD.encode(&password)
        )
        .as_bytes(),
        "control",
        &secrets,
        &mut control,
    );
    assert!(!control.is_empty());
}
