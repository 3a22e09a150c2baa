//! The registry lifecycle of the Rancher page over gRPC (R1–R12, R15, R16),
//! against a real server on loopback, across restarts.

mod common;

use common::{assert_status, custom, TestServer};
use registrar::pb;
use tonic::Code;

#[tokio::test]
async fn the_whole_lifecycle_survives_restarts() {
    let mut server = TestServer::start().await;
    let mut c = server.admin().await;
    let env = c.create_env("prod", pb::Orchestration::Cattle).await;

    // Create: the answer and the list show no password.
    let first = c
        .add_registry(custom(&env, "Reg.Example.com:5000", "alice", "pw-one"))
        .await;
    assert_eq!(first.address, "reg.example.com:5000");
    assert_eq!(first.state, pb::RegistryState::Active as i32);
    let listed = c.list(&env).await;
    assert_eq!(listed, vec![first.clone()]);

    // A second credential for the same address: same registry, new credential (R7).
    let second = c
        .add_registry(custom(&env, "reg.example.com:5000", "bob", "pw-two"))
        .await;
    assert_eq!(second.id, first.id);
    assert_ne!(second.credential_id, first.credential_id);
    assert_eq!(second.username, "bob");
    assert_eq!(c.list(&env).await.len(), 1);

    // Edit: the password must be re-entered; the address never changes (R8).
    let edit = |password: &str, address: &str| pb::UpdateRegistryRequest {
        id: first.id.clone(),
        address: address.into(),
        username: "carol".into(),
        password: password.into(),
        insecure: Some(true),
        ..Default::default()
    };
    assert_status(
        c.reg.update_registry(edit("", "")).await,
        Code::InvalidArgument,
        Some("password"),
    );
    assert_status(
        c.reg.update_registry(edit("pw", "other.example.com")).await,
        Code::InvalidArgument,
        Some("address"),
    );
    let edited = c
        .reg
        .update_registry(edit("pw-three", "reg.example.com:5000"))
        .await
        .unwrap()
        .into_inner()
        .registry
        .unwrap();
    assert_eq!(edited.username, "carol");
    assert_eq!(edited.email, "ops@example.com");
    assert!(edited.insecure);
    assert_ne!(edited.credential_id, second.credential_id);

    // Deactivate and activate, with FAILED_PRECONDITION on no-ops (R10).
    let id = || first.id.clone();
    assert_status(
        c.reg
            .activate_registry(pb::ActivateRegistryRequest {
                id: id(),
                request_id: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        None,
    );
    let inactive = c
        .reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: id(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .registry
        .unwrap();
    assert_eq!(inactive.state, pb::RegistryState::Inactive as i32);
    assert_status(
        c.reg
            .deactivate_registry(pb::DeactivateRegistryRequest {
                id: id(),
                request_id: String::new(),
            })
            .await,
        Code::FailedPrecondition,
        None,
    );

    // Restart: the inactive registry is intact.
    server.restart().await;
    let mut c = server.admin().await;
    let after = c
        .reg
        .get_registry(pb::GetRegistryRequest {
            id: id(),
            min_revision: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .registry
        .unwrap();
    assert_eq!(after, inactive);

    let active = c
        .reg
        .activate_registry(pb::ActivateRegistryRequest {
            id: id(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .registry
        .unwrap();
    assert_eq!(active.state, pb::RegistryState::Active as i32);
    assert_eq!(
        active.credential_id, edited.credential_id,
        "activation keeps the credential"
    );

    // Delete: the address is unknown afterwards, also after a restart.
    c.reg
        .delete_registry(pb::DeleteRegistryRequest {
            id: id(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    assert!(c.list(&env).await.is_empty());
    server.restart().await;
    let mut c = server.admin().await;
    assert!(c.list(&env).await.is_empty());
    assert_status(
        c.reg
            .get_registry(pb::GetRegistryRequest {
                id: id(),
                min_revision: 0,
            })
            .await,
        Code::NotFound,
        None,
    );
    let env_after = c
        .env
        .get_environment(pb::GetEnvironmentRequest {
            id: env.clone(),
            min_revision: 0,
        })
        .await
        .unwrap();
    assert_eq!(env_after.into_inner().environment.unwrap().name, "prod");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_and_changes_nothing() {
    let server = TestServer::start().await;
    let mut c = server.admin().await;
    let env = c.create_env("prod", pb::Orchestration::Kubernetes).await;
    let good = c.add_registry(custom(&env, "reg.io", "alice", "pw")).await;

    let gcr = |password: &str| pb::CreateRegistryRequest {
        kind: pb::RegistryKind::Gcr as i32,
        address: "gcr.io".into(),
        username: "_json_key".into(),
        ..custom(&env, "", "", password)
    };
    let big_key = serde_json::json!({
        "type": "service_account", "client_email": "a@b", "private_key": "k",
        "private_key_id": "i", "pad": "x".repeat(9000)
    })
    .to_string();
    let cases: Vec<(&str, pb::CreateRegistryRequest, &str)> = vec![
        (
            "http scheme",
            custom(&env, "http://reg.io", "u", "p"),
            "address",
        ),
        (
            "https scheme",
            custom(&env, "https://reg.io", "u", "p"),
            "address",
        ),
        ("path", custom(&env, "reg.io/v2/", "u", "p"), "address"),
        (
            "user info",
            custom(&env, "user@reg.io", "u", "p"),
            "address",
        ),
        ("wildcard", custom(&env, "*.reg.io", "u", "p"), "address"),
        (
            "quay kind with another address",
            pb::CreateRegistryRequest {
                kind: pb::RegistryKind::Quay as i32,
                ..custom(&env, "reg.io", "u", "p")
            },
            "address",
        ),
        (
            "ecr kind with a non-ECR address",
            pb::CreateRegistryRequest {
                kind: pb::RegistryKind::Ecr as i32,
                ..custom(&env, "reg.io", "u", "p")
            },
            "address",
        ),
        (
            "empty email",
            pb::CreateRegistryRequest {
                email: String::new(),
                ..custom(&env, "a.io", "u", "p")
            },
            "email",
        ),
        ("empty username", custom(&env, "a.io", "", "p"), "username"),
        ("empty password", custom(&env, "a.io", "u", ""), "password"),
        (
            // Over the rule's 8 KiB, under the transport's limit (a 1 MiB
            // request is OUT_OF_RANGE before any rule: tests/hostile.rs).
            "9 KiB password",
            custom(&env, "a.io", "u", &"p".repeat(9 * 1024)),
            "password",
        ),
        ("gcr key that is not json", gcr("not json"), "password"),
        (
            "gcr key of another type",
            gcr(r#"{"type":"authorized_user"}"#),
            "password",
        ),
        ("gcr key over 8 KiB", gcr(&big_key), "password"),
        (
            "unknown kind",
            pb::CreateRegistryRequest {
                kind: 99,
                ..custom(&env, "a.io", "u", "p")
            },
            "kind",
        ),
        (
            "unspecified kind",
            pb::CreateRegistryRequest {
                kind: 0,
                ..custom(&env, "a.io", "u", "p")
            },
            "kind",
        ),
        (
            "a private key as CA",
            pb::CreateRegistryRequest {
                ca_certificate_pem:
                    "-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n".into(),
                ..custom(&env, "a.io", "u", "p")
            },
            "ca_certificate_pem",
        ),
    ];
    for (name, request, field) in cases {
        let status = assert_status(
            c.reg.create_registry(request).await,
            Code::InvalidArgument,
            Some(field),
        );
        assert!(
            !status.message().contains("pppppppp"),
            "{name}: echoed the password"
        );
        assert_eq!(
            c.list(&env).await,
            vec![good.clone()],
            "{name} changed state"
        );
    }

    // Unknown ids and no-op transitions change nothing either.
    assert_status(
        c.reg
            .delete_registry(pb::DeleteRegistryRequest {
                id: "nope".into(),
                request_id: String::new(),
            })
            .await,
        Code::NotFound,
        None,
    );
    assert_status(
        c.reg
            .create_registry(custom("nope", "a.io", "u", "p"))
            .await,
        Code::NotFound,
        None,
    );
    assert_eq!(c.list(&env).await, vec![good]);
}

#[tokio::test]
async fn tokens_scope_callers_to_their_environment() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let a = admin.create_env("a", pb::Orchestration::Cattle).await;
    let b = admin.create_env("b", pb::Orchestration::Cattle).await;
    let reg_b = admin.add_registry(custom(&b, "b.io", "u", "p")).await;

    let member_a = admin.token(pb::Role::Member, &a).await;
    let agent_a = admin.token(pb::Role::Agent, &a).await;
    let mut m = server.clients_with(Some(&member_a)).await;

    // A member manages its own environment, with environment_id taken from the token.
    m.reg
        .create_registry(custom(&a, "a.io", "u", "p"))
        .await
        .unwrap();
    assert_eq!(m.list("").await.len(), 1);
    // Another environment's objects look missing.
    assert_status(
        m.reg
            .get_registry(pb::GetRegistryRequest {
                min_revision: 0,
                id: reg_b.id.clone(),
            })
            .await,
        Code::NotFound,
        None,
    );
    assert_status(
        m.reg
            .delete_registry(pb::DeleteRegistryRequest {
                id: reg_b.id.clone(),
                request_id: String::new(),
            })
            .await,
        Code::NotFound,
        None,
    );
    assert_status(
        m.reg.create_registry(custom(&b, "x.io", "u", "p")).await,
        Code::NotFound,
        None,
    );
    assert_status(
        m.reg
            .list_registries(pb::ListRegistriesRequest {
                min_revision: 0,
                environment_id: b.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        None,
    );
    let envs = m
        .env
        .list_environments(pb::ListEnvironmentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        envs.environments
            .iter()
            .map(|e| e.id.clone())
            .collect::<Vec<_>>(),
        vec![a.clone()]
    );
    // Settings and tokens are admin-only.
    assert_status(
        m.settings
            .get_settings(pb::GetSettingsRequest { min_revision: 0 })
            .await,
        Code::PermissionDenied,
        None,
    );
    assert_status(
        m.tokens.list_tokens(pb::ListTokensRequest::default()).await,
        Code::PermissionDenied,
        None,
    );

    // An agent may read but not change.
    let mut ag = server.clients_with(Some(&agent_a)).await;
    assert_status(
        ag.reg.create_registry(custom(&a, "c.io", "u", "p")).await,
        Code::PermissionDenied,
        None,
    );
    assert_eq!(ag.list("").await.len(), 1);

    // Missing, garbage and revoked tokens are UNAUTHENTICATED.
    let mut none = server.clients_with(None).await;
    assert_status(
        none.env
            .list_environments(pb::ListEnvironmentsRequest::default())
            .await,
        Code::Unauthenticated,
        None,
    );
    let mut garbage = server
        .clients_with(Some("rgr.nope.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        .await;
    assert_status(
        garbage
            .env
            .list_environments(pb::ListEnvironmentsRequest::default())
            .await,
        Code::Unauthenticated,
        None,
    );
    // The last character changed, whatever it was.
    let last = if member_a.ends_with('x') { 'y' } else { 'x' };
    let tampered = format!("{}{last}", &member_a[..member_a.len() - 1]);
    assert_ne!(tampered, member_a);
    let mut t = server.clients_with(Some(&tampered)).await;
    assert_status(
        t.env
            .list_environments(pb::ListEnvironmentsRequest::default())
            .await,
        Code::Unauthenticated,
        None,
    );

    let listed = admin
        .tokens
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tokens;
    let id = member_a.split('.').nth(1).unwrap().to_owned();
    assert!(listed.iter().any(|t| t.token_id == id));
    assert!(!format!("{listed:?}").contains(member_a.split('.').nth(2).unwrap()));
    admin
        .tokens
        .revoke_token(pb::RevokeTokenRequest { token_id: id })
        .await
        .unwrap();
    assert_status(
        m.env
            .list_environments(pb::ListEnvironmentsRequest::default())
            .await,
        Code::Unauthenticated,
        None,
    );
}

#[tokio::test]
async fn request_ids_make_retries_safe_across_restarts() {
    let mut server = TestServer::start().await;
    let mut c = server.admin().await;
    let env = c.create_env("prod", pb::Orchestration::Cattle).await;
    let request = pb::CreateRegistryRequest {
        request_id: "req-1".into(),
        ..custom(&env, "r.io", "alice", "pw")
    };
    let first = c.add_registry(request.clone()).await;
    // A later change does not alter what the retry answers.
    c.reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: first.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    server.restart().await;
    let mut c = server.admin().await;
    let retry = c.add_registry(request.clone()).await;
    assert_eq!(retry, first);
    let reused = pb::CreateRegistryRequest {
        password: "other".into(),
        ..request
    };
    assert_status(
        c.reg.create_registry(reused).await,
        Code::AlreadyExists,
        None,
    );
    let regs = c.list(&env).await;
    assert_eq!(regs.len(), 1);
    assert_eq!(
        regs[0].credential_id, first.credential_id,
        "the retry wrote nothing"
    );
}

#[tokio::test]
async fn lists_paginate_without_gaps_or_repeats() {
    let server = TestServer::start().await;
    let mut c = server.admin().await;
    let env = c.create_env("prod", pb::Orchestration::Cattle).await;
    for i in 0..7 {
        c.reg
            .create_registry(custom(&env, &format!("r{i}.io"), "u", "p"))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = c
            .reg
            .list_registries(pb::ListRegistriesRequest {
                min_revision: 0,
                environment_id: env.clone(),
                page_size: 3,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.registries.len() <= 3);
        seen.extend(page.registries.into_iter().map(|r| r.address));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("r{i}.io")).collect::<Vec<_>>());
    assert_status(
        c.reg
            .list_registries(pb::ListRegistriesRequest {
                min_revision: 0,
                environment_id: env.clone(),
                page_size: -1,
                page_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
        Some("page_size"),
    );
    assert_status(
        c.reg
            .list_registries(pb::ListRegistriesRequest {
                min_revision: 0,
                environment_id: env,
                page_size: 1,
                page_token: "!!".into(),
            })
            .await,
        Code::InvalidArgument,
        Some("page_token"),
    );
}

#[tokio::test]
async fn settings_are_validated_and_persisted() {
    let mut server = TestServer::start().await;
    let mut c = server.admin().await;
    let set = |default: &str, whitelist: &[&str], paths: &[&str]| pb::UpdateSettingsRequest {
        settings: Some(pb::Settings {
            default_registry: default.into(),
            whitelist: whitelist.iter().map(|s| s.to_string()).collect(),
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }),
        request_id: String::new(),
    };
    let s = c
        .settings
        .update_settings(set(
            "Reg:5000",
            &["reg:5000", "docker.io", "quay.io/myorg/"],
            &[],
        ))
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(s.default_registry, "reg:5000");
    assert_eq!(
        s.whitelist,
        vec!["reg:5000", "index.docker.io", "quay.io/myorg/"]
    );
    assert_status(
        c.settings
            .update_settings(set("https://reg", &[], &["default_registry"]))
            .await,
        Code::InvalidArgument,
        Some("settings.default_registry"),
    );
    assert_status(
        c.settings
            .update_settings(set("", &["a*.io"], &["whitelist"]))
            .await,
        Code::InvalidArgument,
        Some("settings.whitelist"),
    );
    assert_status(
        c.settings.update_settings(set("", &[], &["nope"])).await,
        Code::InvalidArgument,
        Some("update_mask"),
    );
    // Only the masked field changes.
    c.settings
        .update_settings(set("", &["ignored.io"], &["default_registry"]))
        .await
        .unwrap();
    server.restart().await;
    let mut c = server.admin().await;
    let s = c
        .settings
        .get_settings(pb::GetSettingsRequest { min_revision: 0 })
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(s.default_registry, "");
    assert_eq!(
        s.whitelist,
        vec!["reg:5000", "index.docker.io", "quay.io/myorg/"]
    );
}

#[tokio::test]
async fn deleting_an_environment_removes_its_registries() {
    let server = TestServer::start().await;
    let mut c = server.admin().await;
    let env = c.create_env("gone", pb::Orchestration::Kubernetes).await;
    let reg = c.add_registry(custom(&env, "r.io", "u", "p")).await;
    c.env
        .delete_environment(pb::DeleteEnvironmentRequest {
            id: env.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    assert_status(
        c.env
            .get_environment(pb::GetEnvironmentRequest {
                id: env,
                min_revision: 0,
            })
            .await,
        Code::NotFound,
        None,
    );
    assert_status(
        c.reg
            .get_registry(pb::GetRegistryRequest {
                id: reg.id,
                min_revision: 0,
            })
            .await,
        Code::NotFound,
        None,
    );
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    let server = TestServer::start().await;
    let ch = server.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "registrar.v1.RegistryService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(ch);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("{msg:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in [
        "registrar.v1.RegistryService",
        "registrar.v1.EnvironmentService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&name.to_owned()), "{names:?}");
    }
}

/// Returns the bootstrap token's id (`rgr.<id>.<secret>`).
fn token_id(token: &str) -> String {
    token.split('.').nth(1).expect("a token id").to_owned()
}

#[tokio::test]
async fn a_revoked_bootstrap_token_never_returns_and_admin_token_recovers() {
    let mut server = TestServer::start().await;
    let file = server.data_dir().join("admin.token");
    assert!(file.exists());
    let bootstrap = server.admin.clone();
    let mut admin = server.admin().await;
    admin
        .tokens
        .revoke_token(pb::RevokeTokenRequest {
            token_id: token_id(&bootstrap),
        })
        .await
        .unwrap();
    // The file goes with its token, while the server runs.
    let mut gone = false;
    for _ in 0..100 {
        if !file.exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(gone, "the revoked token's file is removed");
    // A restart does not bring it back, nor any other admin token.
    server.restart().await;
    assert!(!file.exists(), "no new bootstrap token after a restart");
    let mut old = server.clients_with(Some(&bootstrap)).await;
    assert_status(
        old.env
            .list_environments(pb::ListEnvironmentsRequest::default())
            .await,
        Code::Unauthenticated,
        None,
    );
    // Offline recovery: with the server stopped, mint a token and use it.
    server.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["admin-token", "--data-dir"])
        .arg(server.data_dir())
        .env_remove("REGISTRAR_KEY")
        .output()
        .expect("run registrar admin-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(minted.starts_with("rgr."), "one token on stdout: {minted}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&minted),
        "the token is printed once, on stdout"
    );
    server.restart().await;
    let mut recovered = server.clients_with(Some(&minted)).await;
    recovered
        .env
        .list_environments(pb::ListEnvironmentsRequest::default())
        .await
        .expect("the minted admin token works");
    assert!(!file.exists(), "recovery writes no token file");
}

#[tokio::test]
async fn admin_token_refuses_a_running_server_s_directory() {
    let server = TestServer::start().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["admin-token", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .expect("run registrar admin-token");
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "no token from a running server's data"
    );
}

#[tokio::test]
async fn writes_answer_their_revision_and_reads_wait_for_a_min_revision() {
    let server = TestServer::start().await;
    let mut c = server.admin().await;
    let created = c
        .env
        .create_environment(pb::CreateEnvironmentRequest {
            name: "rev".into(),
            orchestration: pb::Orchestration::Cattle as i32,
            request_id: "create-rev".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let env = created.environment.unwrap().id;
    assert!(created.revision > 0);
    let reg = c
        .reg
        .create_registry(custom(&env, "reg.example.com", "alice", "pw"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        reg.revision > created.revision,
        "revisions follow commit order"
    );
    // A retry answers the first call's revision, not a new one.
    let retried = c
        .env
        .create_environment(pb::CreateEnvironmentRequest {
            name: "rev".into(),
            orchestration: pb::Orchestration::Cattle as i32,
            request_id: "create-rev".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.revision, created.revision);

    // A read at a revision this server has: answered at once, at least there.
    let read = c
        .reg
        .list_registries(pb::ListRegistriesRequest {
            environment_id: env.clone(),
            min_revision: reg.revision,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(read.revision >= reg.revision);
    assert_eq!(read.registries.len(), 1);

    // A revision no commit reached: the read waits for the call's deadline
    // (here shorter than the 5 s bound), then names both positions.
    let asked = reg.revision + 1000;
    let mut request = tonic::Request::new(pb::ResolvePullRequest {
        environment_id: env.clone(),
        target: Some(pb::resolve_pull_request::Target::Image(
            "reg.example.com/app".into(),
        )),
        min_revision: asked,
    });
    request.set_timeout(std::time::Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let status = assert_status(c.pull.resolve_pull(request).await, Code::Unavailable, None);
    assert!(
        status
            .message()
            .contains(&format!("replica at {}, asked for {asked}", reg.revision)),
        "{status:?}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1000),
        "it waited for the deadline"
    );
    // Every read takes it, not only pulls.
    let mut request = tonic::Request::new(pb::GetSettingsRequest {
        min_revision: asked,
    });
    request.set_timeout(std::time::Duration::from_millis(200));
    assert_status(
        c.settings.get_settings(request).await,
        Code::Unavailable,
        None,
    );
}
