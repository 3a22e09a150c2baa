//! ResolvePull over gRPC: every rule R10–R17 with the answer an agent gets,
//! in the Cattle and Kubernetes shapes; host configuration and pull secrets.

mod common;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use common::{allowed, assert_status, custom, denied, Fixture, TestServer};
use registrar::pb;
use tonic::Code;

fn cattle(a: &pb::PullAllowed) -> &pb::CattleAuth {
    match &a.orchestrator {
        Some(pb::pull_allowed::Orchestrator::Cattle(c)) => c,
        other => panic!("expected cattle, got {other:?}"),
    }
}

fn kubernetes(a: &pb::PullAllowed) -> &pb::KubernetesAuth {
    match &a.orchestrator {
        Some(pb::pull_allowed::Orchestrator::Kubernetes(k)) => k,
        other => panic!("expected kubernetes, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cattle_agent_gets_docker_auth_for_an_active_registry() {
    let Fixture {
        server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Cattle).await;
    admin
        .add_registry(pb::CreateRegistryRequest {
            insecure: true,
            ..custom(&env, "reg.example.com:5000", "alice", "p\"w/+?")
        })
        .await;
    let agent = admin.token(pb::Role::Agent, &env).await;
    let mut a = server.clients_with(Some(&agent)).await;

    // environment_id may be omitted: it comes from the token.
    let r = a
        .resolve("", "reg.example.com:5000/team/app:1.0")
        .await
        .unwrap();
    assert_eq!(r.resolved_image, "reg.example.com:5000/team/app:1.0");
    assert_eq!(r.registry, "reg.example.com:5000");
    assert!(r.revision > 0);
    let ok = allowed(&r);
    assert!(ok.insecure);
    let cred = ok.credential.as_ref().unwrap();
    assert_eq!(
        (cred.username.as_str(), cred.password.as_str()),
        ("alice", "p\"w/+?")
    );
    let c = cattle(ok);
    let config = c.auth_config.as_ref().unwrap();
    assert_eq!(config.server_address, "reg.example.com:5000");
    // X-Registry-Auth decodes as the Docker daemon decodes it.
    let json = base64::engine::general_purpose::URL_SAFE
        .decode(&c.x_registry_auth)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["username"], "alice");
    assert_eq!(v["password"], "p\"w/+?");
    assert_eq!(v["serveraddress"], "reg.example.com:5000");
    assert_eq!(v["email"], "ops@example.com");
}

#[tokio::test]
async fn a_kubernetes_agent_gets_a_docker_config_and_a_kubelet_response() {
    let Fixture {
        server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Kubernetes).await;
    admin
        .add_registry(pb::CreateRegistryRequest {
            kind: pb::RegistryKind::DockerHub as i32,
            ..custom(&env, "", "hubuser", "hubpass")
        })
        .await;
    let mut a = server.agent(&mut admin, &env).await;
    let r = a.resolve("", "nginx").await.unwrap();
    assert_eq!(r.resolved_image, "docker.io/library/nginx:latest");
    assert_eq!(r.registry, "index.docker.io");
    let k = kubernetes(allowed(&r));
    let config: serde_json::Value = serde_json::from_str(&k.docker_config_json).unwrap();
    let entry = &config["auths"]["https://index.docker.io/v1/"];
    assert_eq!(entry["username"], "hubuser");
    assert_eq!(
        entry["auth"],
        base64::engine::general_purpose::STANDARD.encode("hubuser:hubpass")
    );
    let provider: serde_json::Value =
        serde_json::from_str(&k.credential_provider_response).unwrap();
    assert_eq!(
        provider["apiVersion"],
        "credentialprovider.kubelet.k8s.io/v1"
    );
    assert_eq!(provider["kind"], "CredentialProviderResponse");
    assert_eq!(provider["cacheKeyType"], "Registry");
    assert_eq!(provider["cacheDuration"], "1m0s");
    assert_eq!(provider["auth"]["docker.io"]["password"], "hubpass");
}

#[tokio::test]
async fn deactivation_denies_and_deletion_makes_pulls_anonymous() {
    let Fixture {
        server: _server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Cattle).await;
    let reg = admin
        .add_registry(custom(&env, "r.io", "u", "secret-pw"))
        .await;
    admin
        .reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: reg.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let r = admin.resolve(&env, "r.io/a").await.unwrap();
    assert_eq!(denied(&r).0, pb::DenyReason::RegistryInactive);
    assert!(!format!("{r:?}").contains("secret-pw"));

    admin
        .reg
        .activate_registry(pb::ActivateRegistryRequest {
            id: reg.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let r = admin.resolve(&env, "r.io/a").await.unwrap();
    assert_eq!(
        allowed(&r).credential.as_ref().unwrap().password,
        "secret-pw"
    );

    admin
        .reg
        .delete_registry(pb::DeleteRegistryRequest {
            id: reg.id,
            request_id: String::new(),
        })
        .await
        .unwrap();
    let r = admin.resolve(&env, "r.io/a").await.unwrap();
    let ok = allowed(&r);
    assert!(
        ok.credential.is_none(),
        "R11: unknown registries are pulled anonymously"
    );
    assert_eq!(cattle(ok), &pb::CattleAuth::default());
}

#[tokio::test]
async fn the_latest_credential_is_the_one_handed_out() {
    let Fixture {
        server: _server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Cattle).await;
    admin
        .add_registry(custom(&env, "r.io", "first", "one"))
        .await;
    admin
        .add_registry(custom(&env, "R.IO", "second", "two"))
        .await;
    let r = admin.resolve(&env, "r.io/a").await.unwrap();
    let cred = allowed(&r).credential.clone().unwrap();
    assert_eq!(
        (cred.username.as_str(), cred.password.as_str()),
        ("second", "two")
    );
}

#[tokio::test]
async fn an_expired_credential_is_never_handed_out() {
    let Fixture {
        server: _server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Kubernetes).await;
    let expire = SystemTime::now() + Duration::from_millis(1500);
    admin
        .add_registry(pb::CreateRegistryRequest {
            expire_time: Some(registrar::timestamp::system_to_timestamp(expire)),
            ..custom(&env, "r.io", "AWS", "token")
        })
        .await;
    let r = admin.resolve(&env, "r.io/a").await.unwrap();
    let ok = allowed(&r);
    assert!(ok.expire_time.is_some());
    let provider: serde_json::Value =
        serde_json::from_str(&kubernetes(ok).credential_provider_response).unwrap();
    let cache = provider["cacheDuration"].as_str().unwrap().to_owned();
    assert!(
        ["0s", "1s"].contains(&cache.as_str()),
        "at most half of the remaining life: {cache}"
    );

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = admin.resolve(&env, "r.io/a").await.unwrap();
    assert_eq!(denied(&r).0, pb::DenyReason::CredentialExpired);
    assert!(!format!("{r:?}").contains("token\""));
}

#[tokio::test]
async fn the_default_registry_and_the_whitelist_decide_with_rancher_messages() {
    let Fixture {
        server: _server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Cattle).await;
    admin.add_registry(custom(&env, "reg:5000", "u", "p")).await;
    admin
        .set_settings("reg:5000", &["reg:5000", "quay.io/myorg/"])
        .await;

    let r = admin.resolve(&env, "ubuntu:14.04").await.unwrap();
    assert_eq!(r.resolved_image, "reg:5000/ubuntu:14.04");
    assert_eq!(allowed(&r).credential.as_ref().unwrap().username, "u");

    let r = admin
        .resolve(&env, "docker.io/library/ubuntu")
        .await
        .unwrap();
    assert_eq!(
        denied(&r),
        (
            pb::DenyReason::NotWhitelisted,
            "The provided registry is not whitelisted".into()
        )
    );
    assert!(
        allowed(&admin.resolve(&env, "quay.io/myorg/app").await.unwrap())
            .credential
            .is_none()
    );
    assert_eq!(
        denied(&admin.resolve(&env, "quay.io/myorgevil/app").await.unwrap()).0,
        pb::DenyReason::NotWhitelisted
    );

    admin.set_settings("", &["reg:5000"]).await;
    let r = admin.resolve(&env, "ubuntu").await.unwrap();
    assert_eq!(r.resolved_image, "docker.io/library/ubuntu:latest");
    assert_eq!(
        denied(&r),
        (
            pb::DenyReason::DefaultNotWhitelisted,
            "The default registry is not whitelisted".into()
        )
    );
}

#[tokio::test]
async fn bad_images_are_invalid_and_hand_out_nothing() {
    let Fixture {
        server: _server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Cattle).await;
    admin.add_registry(custom(&env, "reg", "u", "p")).await;
    let tag = format!("reg.io/a:{}", "t".repeat(129));
    let huge = "a".repeat(10 * 1024 * 1024);
    for image in [
        "",
        "reg.io/a\0",
        "ｒeg.io/a",
        "HTTP://reg/x",
        "user:pw@reg/x",
        "reg:99999/x",
        "reg.io/Upper",
        tag.as_str(),
        "a@sha256:",
        "a@sha256:0123",
        "a@b@c",
    ] {
        assert_status(
            admin.resolve(&env, image).await,
            Code::InvalidArgument,
            Some("image"),
        );
    }
    // 10 MB is refused by the message size limit or the parser, never resolved.
    let status = admin.resolve(&env, &huge).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted
        ),
        "{status:?}"
    );
    let registry = admin
        .pull
        .resolve_pull(pb::ResolvePullRequest {
            min_revision: 0,
            environment_id: env.clone(),
            target: Some(pb::resolve_pull_request::Target::Registry(
                "*.reg.io".into(),
            )),
        })
        .await;
    assert_status(registry, Code::InvalidArgument, Some("registry"));
    // The connection still serves.
    assert!(admin.resolve(&env, "reg.io/ok").await.is_ok());
}

#[tokio::test]
async fn agents_resolve_only_in_their_own_environment() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let a = admin.create_env("a", pb::Orchestration::Cattle).await;
    let b = admin.create_env("b", pb::Orchestration::Cattle).await;
    admin
        .add_registry(custom(&b, "r.io", "u", "b-secret"))
        .await;
    let mut ag = server.agent(&mut admin, &a).await;
    let status = assert_status(ag.resolve(&b, "r.io/x").await, Code::NotFound, None);
    assert!(!status.message().contains("b-secret"));
    assert_status(ag.resolve("nope", "r.io/x").await, Code::NotFound, None);
    assert!(allowed(&ag.resolve("", "r.io/x").await.unwrap())
        .credential
        .is_none());
    assert_status(
        admin.resolve("", "r.io/x").await,
        Code::InvalidArgument,
        Some("environment_id"),
    );
}

#[tokio::test]
async fn host_configuration_trusts_insecure_and_private_ca_registries() {
    let Fixture {
        server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Kubernetes).await;
    admin
        .add_registry(pb::CreateRegistryRequest {
            insecure: true,
            ..custom(&env, "plain.local:5000", "u", "p")
        })
        .await;
    let agent = admin.token(pb::Role::Agent, &env).await;
    let mut ag = server.clients_with(Some(&agent)).await;
    let files = ag
        .pull
        .get_host_config(pb::GetHostConfigRequest {
            min_revision: 0,
            environment_id: String::new(),
            format: pb::HostConfigFormat::Docker as i32,
            include_auth: false,
        })
        .await
        .unwrap()
        .into_inner()
        .files;
    let daemon = files
        .iter()
        .find(|f| f.path == "daemon.json")
        .expect("daemon.json");
    let v: serde_json::Value = serde_json::from_str(&daemon.content).unwrap();
    assert_eq!(
        v["insecure-registries"],
        serde_json::json!(["plain.local:5000"])
    );

    let k3s = ag
        .pull
        .get_host_config(pb::GetHostConfigRequest {
            min_revision: 0,
            environment_id: String::new(),
            format: pb::HostConfigFormat::K3s as i32,
            include_auth: true,
        })
        .await
        .unwrap()
        .into_inner()
        .files;
    let yaml = k3s
        .iter()
        .find(|f| f.path == "registries.yaml")
        .expect("registries.yaml");
    assert_eq!(yaml.mode, 0o600);
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml.content).unwrap();
    assert_eq!(
        v["configs"]["plain.local:5000"]["auth"]["password"],
        serde_yaml::Value::from("p")
    );
    // Credentials in host files are for agents only.
    assert_status(
        admin
            .pull
            .get_host_config(pb::GetHostConfigRequest {
                min_revision: 0,
                environment_id: env.clone(),
                format: pb::HostConfigFormat::K3s as i32,
                include_auth: true,
            })
            .await,
        Code::PermissionDenied,
        None,
    );
    assert_status(
        ag.pull
            .get_host_config(pb::GetHostConfigRequest {
                min_revision: 0,
                environment_id: String::new(),
                format: 0,
                include_auth: false,
            })
            .await,
        Code::InvalidArgument,
        Some("format"),
    );
}

#[tokio::test]
async fn kubernetes_agents_fetch_a_pull_secret_of_active_registries() {
    let Fixture {
        server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Kubernetes).await;
    admin.add_registry(custom(&env, "a.io", "ua", "pa")).await;
    let b = admin.add_registry(custom(&env, "b.io", "ub", "pb")).await;
    admin
        .reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: b.id,
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut ag = server.agent(&mut admin, &env).await;
    let s = ag
        .pull
        .get_pull_secret(pb::GetPullSecretRequest {
            min_revision: 0,
            environment_id: String::new(),
            name: String::new(),
            namespace: "apps".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let config: serde_json::Value = serde_json::from_str(&s.docker_config_json).unwrap();
    assert_eq!(config["auths"]["a.io"]["password"], "pa");
    assert!(
        config["auths"].get("b.io").is_none(),
        "inactive registries are left out"
    );
    let manifest: serde_json::Value = serde_json::from_str(&s.secret_manifest).unwrap();
    assert_eq!(manifest["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(manifest["metadata"]["namespace"], "apps");
    let data = base64::engine::general_purpose::STANDARD
        .decode(manifest["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(data).unwrap(), s.docker_config_json);

    assert_status(
        admin
            .pull
            .get_pull_secret(pb::GetPullSecretRequest {
                min_revision: 0,
                environment_id: env,
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        None,
    );
    let cattle = admin.create_env("c", pb::Orchestration::Cattle).await;
    let mut cag = server.agent(&mut admin, &cattle).await;
    assert_status(
        cag.pull
            .get_pull_secret(pb::GetPullSecretRequest::default())
            .await,
        Code::FailedPrecondition,
        None,
    );
}

#[tokio::test]
async fn a_gcr_registry_hands_out_the_service_account_key_as_json_key() {
    let Fixture {
        server: _server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Kubernetes).await;
    let key = serde_json::json!({
        "type": "service_account",
        "client_email": "puller@proj.iam.gserviceaccount.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
        "private_key_id": "k1",
    })
    .to_string();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
    admin
        .add_registry(pb::CreateRegistryRequest {
            kind: pb::RegistryKind::Gcr as i32,
            address: "europe-west1-docker.pkg.dev".into(),
            username: "_json_key_base64".into(),
            ..custom(&env, "", "", &b64)
        })
        .await;
    let r = admin
        .resolve(&env, "europe-west1-docker.pkg.dev/proj/repo/app:1")
        .await
        .unwrap();
    let cred = allowed(&r).credential.clone().unwrap();
    assert_eq!(cred.username, "_json_key", "stored decoded");
    assert_eq!(cred.password, key);
    let external = pb::CreateRegistryRequest {
        kind: pb::RegistryKind::Gcr as i32,
        address: "gcr.io".into(),
        username: "_json_key".into(),
        ..custom(
            &env,
            "",
            "",
            r#"{"type":"external_account","audience":"x"}"#,
        )
    };
    let status = assert_status(
        admin.reg.create_registry(external).await,
        Code::InvalidArgument,
        Some("password"),
    );
    assert!(
        status.message().contains("external_account"),
        "{}",
        status.message()
    );
}

/// Every path that hands out a secret obeys the whitelist as ResolvePull
/// does: a registry it denies is left out of pull secrets and k3s files.
#[tokio::test]
async fn pull_secrets_and_host_files_leave_out_registries_the_whitelist_denies() {
    let Fixture {
        server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Kubernetes).await;
    for (address, password) in [
        ("a.io", "pass-a"),
        ("b.io", "pass-b"),
        ("quay.io", "pass-q"),
    ] {
        admin
            .add_registry(custom(&env, address, "u", password))
            .await;
    }
    admin.set_settings("", &["a.io", "quay.io/myorg/"]).await;
    let mut ag = server.agent(&mut admin, &env).await;
    let denial = ag.resolve("", "b.io/app:1").await.unwrap();
    assert_eq!(denied(&denial).0, pb::DenyReason::NotWhitelisted);

    let s = ag
        .pull
        .get_pull_secret(pb::GetPullSecretRequest::default())
        .await
        .unwrap()
        .into_inner();
    let config: serde_json::Value = serde_json::from_str(&s.docker_config_json).unwrap();
    let mut hosts: Vec<&String> = config["auths"].as_object().unwrap().keys().collect();
    hosts.sort();
    assert_eq!(hosts, ["a.io", "quay.io"], "b.io is not whitelisted");
    assert!(!s.docker_config_json.contains("pass-b"));

    let files = ag
        .pull
        .get_host_config(pb::GetHostConfigRequest {
            min_revision: 0,
            environment_id: String::new(),
            format: pb::HostConfigFormat::K3s as i32,
            include_auth: true,
        })
        .await
        .unwrap()
        .into_inner()
        .files;
    let all: String = files.iter().map(|f| f.content.as_str()).collect();
    assert!(all.contains("a.io"), "{all}");
    assert!(!all.contains("b.io"), "b.io is not whitelisted: {all}");
    assert!(!all.contains("pass-b"));
}

/// A registry the whitelist admits only through a repository prefix gets
/// a kubelet answer cached per image, so the credential is never reused
/// for another repository of that registry.
#[tokio::test]
async fn a_prefix_whitelist_makes_kubelet_answers_per_image() {
    let Fixture {
        server: _server,
        mut admin,
        env,
    } = Fixture::new(pb::Orchestration::Kubernetes).await;
    for address in ["quay.io", "a.io"] {
        admin.add_registry(custom(&env, address, "u", "p")).await;
    }
    admin.set_settings("", &["a.io", "quay.io/myorg/"]).await;
    let answer = admin.resolve(&env, "quay.io/myorg/app:1").await.unwrap();
    let response: serde_json::Value =
        serde_json::from_str(&kubernetes(allowed(&answer)).credential_provider_response).unwrap();
    assert_eq!(response["cacheKeyType"], "Image");
    let keys: Vec<&String> = response["auth"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["quay.io/myorg/app"]);
    denied(&admin.resolve(&env, "quay.io/other/x:1").await.unwrap());
    // A registry the whitelist names whole keeps the per-registry cache.
    let answer = admin.resolve(&env, "a.io/any/app:1").await.unwrap();
    let response: serde_json::Value =
        serde_json::from_str(&kubernetes(allowed(&answer)).credential_provider_response).unwrap();
    assert_eq!(response["cacheKeyType"], "Registry");
    let keys: Vec<&String> = response["auth"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a.io"]);
}
