//! The admission webhooks over HTTPS, with AdmissionReview documents shaped
//! as the API server sends them: validate refuses what ResolvePull denies,
//! mutate's JSONPatch (applied with a JSON Patch library) rewrites images
//! without a registry to ResolvePull's fully qualified image and leaves the
//! others as written; dry runs and UPDATEs are answered the same; malformed
//! reviews are HTTP 400, unknown and non-Kubernetes environments refused.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use common::{custom, free_port, Fixture, TestServer};
use http_body_util::{BodyExt as _, Full};
use registrar::pb;
use serde_json::{json, Value};

struct Hooks {
    addr: SocketAddr,
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<bytes::Bytes>,
    >,
}

impl Hooks {
    /// POSTs `body` to `path`: the HTTP status and the body.
    async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let request = http::Request::post(format!("https://{}{path}?timeout=10s", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.client.request(request),
        )
        .await
        .expect("an answer within the review's timeout")
        .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body.to_vec())
    }

    /// The review's answer (`response`), after checking it is HTTP 200.
    async fn review(&self, env: &str, hook: &str, review: &Value) -> Value {
        let (status, body) = self
            .post(
                &format!("/admission/v1/{env}/{hook}"),
                serde_json::to_vec(review).unwrap(),
            )
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
        answer["response"].clone()
    }
}

/// A server with the webhooks, and a client that trusts only the CA that
/// a webhook configuration's caBundle would carry.
async fn start() -> (Fixture, Hooks) {
    let (ca, cert, key) = common::test_pki("admission test CA", &["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let server = TestServer::start_with(move |c| {
        c.admission_listen = Some(addr);
        c.admission_tls_cert = Some(dir.join("tls.crt"));
        c.admission_tls_key = Some(dir.join("tls.key"));
    })
    .await;
    let fixture = Fixture::with_server(server, pb::Orchestration::Kubernetes).await;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    (fixture, Hooks { addr, client })
}

/// An AdmissionReview as the API server sends it.
fn review(operation: &str, kind: (&str, &str, &str), object: Value, dry_run: bool) -> Value {
    let (group, version, kind) = kind;
    let resource = match kind {
        "Pod" => "pods",
        "Deployment" => "deployments",
        _ => "cronjobs",
    };
    let mut request = json!({
        "uid": uuid::Uuid::new_v4().to_string(),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": "web",
        "namespace": "team-a",
        "operation": operation,
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "object": object,
        "oldObject": null,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": format!("{}Options", operation.to_lowercase())},
    });
    if operation == "UPDATE" {
        // The object as it was: one container, since replaced.
        let mut old = request["object"].clone();
        if let Some(spec) = old.pointer_mut("/spec") {
            if spec.get("template").is_some() {
                spec["template"]["spec"] =
                    json!({"containers": [{"name": "old", "image": "r.example.com/old:1"}]});
            } else {
                *spec = json!({"containers": [{"name": "old", "image": "r.example.com/old:1"}]});
            }
        }
        request["oldObject"] = old;
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

fn pod(containers: &[&str], init: &[&str], ephemeral: &[&str]) -> Value {
    let list = |images: &[&str]| -> Vec<Value> {
        images
            .iter()
            .enumerate()
            .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
            .collect()
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {
            "containers": list(containers),
            "initContainers": list(init),
            "ephemeralContainers": list(ephemeral),
        },
    })
}

fn images_of(spec: &Value) -> Vec<String> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| spec[l].as_array().cloned().unwrap_or_default())
        .map(|c| c["image"].as_str().unwrap().to_owned())
        .collect()
}

fn patched(object: &Value, answer: &Value) -> Value {
    let mut object = object.clone();
    if let Some(patch) = answer["patch"].as_str() {
        assert_eq!(answer["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_applies_the_default_registry_and_validate_refuses_what_pulls_would() {
    let (mut f, hooks) = start().await;
    let reg = f.registry("r.example.com", "u", "p").await;
    f.admin
        .set_settings("r.example.com", &["r.example.com", "quay.io/myorg/"])
        .await;
    let mut agent = f.agent().await;

    // Mutate: images without a registry get the default one, as ResolvePull
    // resolves them; images that name theirs stay as written.
    let object = pod(
        &["ubuntu:14.04", "r.example.com/team/app:1"],
        &["quay.io/myorg/init:2"],
        &["busybox"],
    );
    for (operation, dry_run) in [("CREATE", false), ("UPDATE", false), ("CREATE", true)] {
        let r = review(operation, ("", "v1", "Pod"), object.clone(), dry_run);
        let answer = hooks.review(&f.env, "mutate", &r).await;
        assert_eq!(answer["allowed"], true, "{answer}");
        let images = images_of(&patched(&object, &answer)["spec"]);
        let mut want = Vec::new();
        for (image, qualified) in [
            ("ubuntu:14.04", false),
            ("r.example.com/team/app:1", true),
            ("quay.io/myorg/init:2", true),
            ("busybox", false),
        ] {
            want.push(if qualified {
                image.to_owned()
            } else {
                agent.resolve("", image).await.unwrap().resolved_image
            });
        }
        assert_eq!(images, want, "{operation} dry run {dry_run}");
        assert!(images[0].starts_with("r.example.com/"), "{images:?}");
        // The rewritten pod passes validation.
        let rewritten = patched(&object, &answer);
        let check = review(operation, ("", "v1", "Pod"), rewritten, dry_run);
        let verdict = hooks.review(&f.env, "validate", &check).await;
        assert_eq!(verdict["allowed"], true, "{verdict}");
    }

    // Validate: a Deployment's template with images ResolvePull denies.
    let template = pod(
        &["r.example.com/team/app:1", "evil.example.com/miner:latest"],
        &["quay.io/other/tool:1"],
        &[],
    );
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": template["spec"]}},
    });
    let r = review(
        "CREATE",
        ("apps", "v1", "Deployment"),
        deployment.clone(),
        false,
    );
    let first = hooks.review(&f.env, "validate", &r).await;
    assert_eq!(first["allowed"], false);
    assert_eq!(first["status"]["code"], 403);
    let message = first["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("evil.example.com/miner:latest"),
        "{message}"
    );
    assert!(message.contains("quay.io/other/tool:1"), "{message}");
    assert!(
        message.contains("The provided registry is not whitelisted"),
        "{message}"
    );
    assert!(!message.contains("r.example.com/team/app:1"), "{message}");
    // The same review at the same revision: the same answer.
    let again = hooks.review(&f.env, "validate", &r).await;
    assert_eq!(first, again);

    // An UPDATE judges only the images the object did not have: pods that
    // run images admitted before are not blocked by a later change.
    let mut update = review(
        "UPDATE",
        ("", "v1", "Pod"),
        pod(&["evil.example.com/miner:latest"], &[], &[]),
        false,
    );
    update["request"]["oldObject"] = update["request"]["object"].clone();
    let kept = hooks.review(&f.env, "validate", &update).await;
    assert_eq!(kept["allowed"], true, "{kept}");
    update["request"]["object"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "new", "image": "quay.io/other/tool:1"}));
    let added = hooks.review(&f.env, "validate", &update).await;
    assert_eq!(added["allowed"], false, "{added}");
    let message = added["status"]["message"].as_str().unwrap();
    assert!(message.contains("quay.io/other/tool:1"), "{message}");
    assert!(!message.contains("evil.example.com"), "{message}");

    // A deactivated registry is refused with the page's reason.
    f.admin
        .reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: reg.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let r = review(
        "CREATE",
        ("", "v1", "Pod"),
        pod(&["r.example.com/app"], &[], &[]),
        false,
    );
    let answer = hooks.review(&f.env, "validate", &r).await;
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["status"]["message"]
            .as_str()
            .unwrap()
            .contains("deactivated"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reviews_and_environments_get_clear_answers() {
    let (mut f, hooks) = start().await;
    let (status, body) = hooks
        .post(
            &format!("/admission/v1/{}/validate", f.env),
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("malformed AdmissionReview"));
    let v1beta1 = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}});
    let (status, body) = hooks
        .post(
            &format!("/admission/v1/{}/mutate", f.env),
            serde_json::to_vec(&v1beta1).unwrap(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("admission.k8s.io/v1"));
    let (status, _) = hooks.post("/admission/v1/nothing-here", Vec::new()).await;
    assert_eq!(status, 404);

    let r = review(
        "CREATE",
        ("", "v1", "Pod"),
        pod(&["nginx"], &[], &[]),
        false,
    );
    let unknown = hooks.review("no-such-env", "validate", &r).await;
    assert_eq!(unknown["allowed"], false);
    assert!(unknown["status"]["message"]
        .as_str()
        .unwrap()
        .contains("no-such-env"));

    let cattle = f
        .admin
        .create_env("cattle", pb::Orchestration::Cattle)
        .await;
    f.admin
        .add_registry(custom(&cattle, "r.example.com", "u", "p"))
        .await;
    // Mutate never refuses: it warns and leaves the pod as written.
    let warned = hooks.review(&cattle, "mutate", &r).await;
    assert_eq!(warned["allowed"], true, "{warned}");
    assert!(warned.get("patch").is_none(), "{warned}");
    assert!(
        warned["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not a Kubernetes environment"),
        "{warned}"
    );
    let refused = hooks.review(&cattle, "validate", &r).await;
    assert_eq!(refused["allowed"], false);
    assert!(
        refused["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not a Kubernetes environment"),
        "{refused}"
    );
    // The server kept serving throughout.
    let fine = hooks.review(&f.env, "validate", &r).await;
    assert_eq!(fine["allowed"], true, "{fine}");
}
