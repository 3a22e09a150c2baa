//! deploy/: the Kubernetes manifests run registrar with flags it accepts,
//! wired to what the manifests mount, probe and expose, non-root on a
//! read-only root; the systemd unit's ExecStart, run as written (with the
//! directories systemd would give it), serves and reports healthy. The
//! schemas (`kubernetes-validate`) and systemd's own checks
//! (`systemd-analyze verify` and `security`) run in `.ci/run`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser as _;
use registrar::cli::args::{Cli, Command as Sub};
use registrar::config::ServeConfig;
use serde::Deserialize as _;
use serde_yaml::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn serve(args: &[String]) -> ServeConfig {
    let argv = std::iter::once("registrar".to_owned()).chain(args.iter().cloned());
    match Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .command
    {
        Sub::Serve(config) => config,
        other => panic!("not serve: {other:?}"),
    }
}

fn port(c: &Value, name: &str) -> u16 {
    c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no port {name}")) as u16
}

/// Checks one workload's pod template; returns its container's config.
fn check_workload(workload: &Value, secret: &Value) -> ServeConfig {
    let template = &workload["spec"]["template"];
    let pod = &template["spec"];
    let c = &pod["containers"][0];
    let args: Vec<String> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let config = serve(&args);

    assert_eq!(config.listen.port(), port(c, "grpc"));
    let metrics = config.metrics_listen.expect("metrics are served");
    assert_eq!(metrics.port(), port(c, "metrics"));
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        metrics.port().to_string().as_str()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // Probes: gRPC health on the listen port, ready while pulls answer.
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            c[probe]["grpc"]["port"].as_u64(),
            Some(u64::from(config.listen.port()))
        );
    }
    assert_eq!(
        c["readinessProbe"]["grpc"]["service"],
        "registrar.v1.PullService"
    );

    // Non-root, read-only root, nothing to escalate with.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"].as_u64(), Some(0));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");

    // The key file is the Secret's `kek`, mounted read-only.
    let key_file = config.key_file.clone().expect("a key file");
    let mounts: HashMap<String, (String, bool)> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                (
                    m["mountPath"].as_str().unwrap().to_owned(),
                    m["readOnly"].as_bool().unwrap_or(false),
                ),
            )
        })
        .collect();
    let (key_mount, read_only) = &mounts["key"];
    assert!(read_only);
    let key_volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "key")
        .unwrap();
    assert_eq!(
        key_volume["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    let item = &key_volume["secret"]["items"][0];
    assert_eq!(item["key"], "kek");
    assert!(secret["stringData"]["kek"].is_string());
    assert_eq!(
        key_file,
        Path::new(key_mount).join(item["path"].as_str().unwrap())
    );
    assert!(
        config.key_value.is_none(),
        "the key is a file, not a variable"
    );
    config
}

#[test]
fn the_kubernetes_manifests_run_registrar_with_what_they_mount_probe_and_expose() {
    let sled = documents("kubernetes/registrar-sled.yaml");
    let set = kind(&sled, "StatefulSet");
    let config = check_workload(set, kind(&sled, "Secret"));
    assert!(config.database_url.is_none());
    // The data directory is on the claimed volume.
    let data_mount = set["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "data")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        config.data_dir.starts_with(&data_mount),
        "{:?}",
        config.data_dir
    );
    assert_eq!(
        set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "data"
    );
    assert_eq!(set["spec"]["replicas"].as_u64(), Some(1));

    let pg = documents("kubernetes/registrar-postgres.yaml");
    let deployment = kind(&pg, "Deployment");
    check_workload(deployment, kind(&pg, "Secret"));
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(3));
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap();
    let url = env
        .iter()
        .find(|e| e["name"] == "REGISTRAR_DATABASE_URL")
        .unwrap();
    assert_eq!(url["valueFrom"]["secretKeyRef"]["key"], "database-url");
    assert_eq!(
        kind(&pg, "PodDisruptionBudget")["spec"]["minAvailable"].as_u64(),
        Some(2)
    );

    for docs in [&sled, &pg] {
        for k in [
            "Namespace",
            "Service",
            "PodDisruptionBudget",
            "NetworkPolicy",
        ] {
            kind(docs, k);
        }
    }
}

/// The unit's `Key=value` lines (the last of each key).
fn unit() -> (String, HashMap<String, String>) {
    let text = std::fs::read_to_string(deploy("systemd/registrar.service")).unwrap();
    let keys = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (text, keys)
}

#[test]
fn the_systemd_unit_is_sandboxed_and_takes_its_key_as_a_credential() {
    let (text, keys) = unit();
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "registrar"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("LoadCredential", "kek:/etc/registrar/kek"),
    ] {
        assert_eq!(keys.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert!(text.contains("SystemCallFilter=@system-service"));
    assert!(keys["ExecStart"].contains("--key-file ${CREDENTIALS_DIRECTORY}/kek"));
    assert!(!text.contains("REGISTRAR_KEY"), "no key in the environment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_unit_s_exec_start_serves_as_written() {
    let (_, keys) = unit();
    let dir = tempfile::tempdir().unwrap();
    let dirs: HashMap<&str, PathBuf> =
        ["STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "LOGS_DIRECTORY"]
            .into_iter()
            .map(|name| {
                let path = dir.path().join(name.to_ascii_lowercase());
                std::fs::create_dir(&path).unwrap();
                (name, path)
            })
            .collect();
    // What LoadCredential gives the service: its own read-only copy.
    let key = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    };
    let kek = dirs["CREDENTIALS_DIRECTORY"].join("kek");
    std::fs::write(&kek, format!("{key}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o400)).unwrap();

    // ExecStart as written, its ${VARIABLES} expanded as systemd does.
    let mut words = keys["ExecStart"].split_whitespace().map(|w| {
        let mut w = w.to_owned();
        for (name, path) in &dirs {
            w = w.replace(&format!("${{{name}}}"), &path.display().to_string());
        }
        assert!(!w.contains('$'), "an unexpanded variable: {w}");
        w
    });
    assert_eq!(words.next().as_deref(), Some("/usr/local/bin/registrar"));
    let args: Vec<String> = words.collect();
    let config = serve(&args);
    let mut child = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(&args)
        .env_remove("REGISTRAR_KEY")
        .env_remove("REGISTRAR_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://{}", config.listen);
    let status = common::wait_for_health(&url, &mut child, 150).await;
    let metrics = config.metrics_listen.unwrap();
    let scrape = common::try_http_get(metrics, "/metrics").await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        status,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
    );
    assert_eq!(scrape.unwrap().0, 200);
    let state = &dirs["STATE_DIRECTORY"];
    assert!(state.join("data").join("admin.token").is_file());
    assert!(dirs["LOGS_DIRECTORY"].join("audit.log").is_file());
}

#[test]
fn the_admission_patches_and_webhooks_agree_with_the_server_s_flags_and_routes() {
    let load = |path: &str| -> json_patch::Patch {
        serde_json::from_slice(&std::fs::read(deploy(path)).unwrap()).unwrap()
    };
    let as_json = |v: &Value| -> serde_json::Value { serde_json::to_value(v).unwrap() };
    let pg = documents("kubernetes/registrar-postgres.yaml");
    let mut deployment = as_json(kind(&pg, "Deployment"));
    json_patch::patch(
        &mut deployment,
        &load("kubernetes/admission-deployment-patch.json"),
    )
    .unwrap();
    let mut service = as_json(kind(&pg, "Service"));
    json_patch::patch(
        &mut service,
        &load("kubernetes/admission-service-patch.json"),
    )
    .unwrap();
    let deployment: Value = serde_json::from_value(deployment).unwrap();
    let config = check_workload(&deployment, kind(&pg, "Secret"));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let listen = config
        .admission_listen
        .expect("the patch turns admission on");
    assert_eq!(listen.port(), port(container, "admission"));
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "admission")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(config.admission_tls_cert.unwrap().starts_with(&mount));
    assert!(config.admission_tls_key.unwrap().starts_with(&mount));
    let service_port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["targetPort"] == "admission")
        .unwrap()["port"]
        .as_u64()
        .unwrap();

    let hooks = documents("kubernetes/admission-webhooks.yaml");
    for (kind_name, hook, failure) in [
        ("ValidatingWebhookConfiguration", "validate", "Fail"),
        ("MutatingWebhookConfiguration", "mutate", "Ignore"),
    ] {
        let webhook = &kind(&hooks, kind_name)["webhooks"][0];
        let service = &webhook["clientConfig"]["service"];
        assert_eq!(service["port"].as_u64(), Some(service_port));
        assert_eq!(service["name"], kind(&pg, "Service")["metadata"]["name"]);
        assert_eq!(service["namespace"], "registrar");
        let path = service["path"].as_str().unwrap();
        assert!(
            path.starts_with("/admission/v1/") && path.ends_with(&format!("/{hook}")),
            "{path}"
        );
        assert_eq!(webhook["failurePolicy"], failure);
        assert_eq!(webhook["admissionReviewVersions"][0], "v1");
        assert!(webhook["namespaceSelector"]["matchLabels"].is_mapping());
    }
}
