//! Kubernetes' `admission.k8s.io/v1` AdmissionReview, as the API server
//! sends it to a webhook: the images of a Pod, or of the pod template of a
//! Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController,
//! Job or CronJob (containers, init containers and ephemeral containers),
//! each with the JSON pointer of its `image` field; and the review's
//! answer, with a JSONPatch when images are rewritten. Pure: no I/O.

use base64::Engine as _;
use serde_json::{json, Value};

/// Largest review accepted (the API server's own request limit is 3 MiB).
pub const MAX_REVIEW_BYTES: usize = 3 * 1024 * 1024;

/// What a review asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// The request's uid, echoed in the answer.
    pub uid: String,
    /// Each image with the JSON pointer of its field.
    pub images: Vec<(String, String)>,
    /// Whether the request is a dry run (answered the same).
    pub dry_run: bool,
    /// The images the object had before an UPDATE: already admitted, so
    /// not judged again (a later deactivation must not block the
    /// controllers' updates of running pods, finalizers included).
    pub old_images: Vec<String>,
}

/// Where the pod spec of an object of `kind` is.
fn pod_spec(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job"
        | "PodTemplate" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Reads a review; the error says what is wrong with it.
pub fn parse(body: &[u8]) -> Result<Review, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return Err(
            "expected an AdmissionReview of apiVersion admission.k8s.io/v1 (set admissionReviewVersions: [v1])"
                .to_owned(),
        );
    }
    let request = &review["request"];
    let uid = request["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or("request.uid is missing")?
        .to_owned();
    let kind = request["kind"]["kind"]
        .as_str()
        .ok_or("request.kind.kind is missing")?;
    let spec_at = pod_spec(kind);
    // A deletion has no object; a kind without pods has no images.
    let images = images_of(spec_at, request.get("object"))?;
    let old_images = images_of(spec_at, request.get("oldObject"))?
        .into_iter()
        .map(|(_, image)| image)
        .collect();
    Ok(Review {
        uid,
        images,
        dry_run: request["dryRun"].as_bool().unwrap_or(false),
        old_images,
    })
}

/// The images of an object's pod spec at `spec_at`, with their pointers.
fn images_of(
    spec_at: Option<&str>,
    object: Option<&Value>,
) -> Result<Vec<(String, String)>, String> {
    let mut images = Vec::new();
    let (Some(spec_at), Some(object)) = (spec_at, object) else {
        return Ok(images);
    };
    let Some(spec) = object.pointer(spec_at) else {
        return Ok(images);
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let Some(containers) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in containers.iter().enumerate() {
            match c.get("image") {
                Some(Value::String(image)) => {
                    images.push((format!("{spec_at}/{list}/{i}/image"), image.clone()))
                }
                None | Some(Value::Null) => {}
                Some(_) => return Err(format!("{spec_at}/{list}/{i}/image is not a string")),
            }
        }
    }
    Ok(images)
}

/// The answer to a review: allowed, or refused with `message`; with the
/// JSONPatch of `replacements` (pointer, new value) when there are any.
pub fn answer(uid: &str, refusal: Option<&str>, replacements: &[(String, String)]) -> Value {
    answer_with_warning(uid, refusal, replacements, None)
}

/// `answer`, with a warning the API server shows the client.
pub fn answer_with_warning(
    uid: &str,
    refusal: Option<&str>,
    replacements: &[(String, String)],
    warning: Option<&str>,
) -> Value {
    let mut response = json!({ "uid": uid, "allowed": refusal.is_none() });
    if let Some(warning) = warning {
        response["warnings"] = json!([warning]);
    }
    if let Some(message) = refusal {
        response["status"] = json!({ "code": 403, "reason": "Forbidden", "message": message });
    }
    if !replacements.is_empty() {
        let patch: Vec<Value> = replacements
            .iter()
            .map(|(path, value)| json!({ "op": "replace", "path": path, "value": value }))
            .collect();
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&patch).unwrap_or_default()));
    }
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(kind: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "operation": "CREATE",
                "object": object,
                "dryRun": false,
            }
        }))
        .unwrap()
    }

    #[test]
    fn every_container_list_of_a_pod_and_of_templates_is_read() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "i", "image": "init:1"}],
            "containers": [{"name": "a", "image": "ubuntu:14.04"}, {"name": "b", "image": "r.io/b"}],
            "ephemeralContainers": [{"name": "d", "image": "busybox"}],
        }});
        let r = parse(&review("Pod", pod.clone())).unwrap();
        assert_eq!(
            r.images,
            [
                (
                    "/spec/containers/0/image".to_owned(),
                    "ubuntu:14.04".to_owned()
                ),
                ("/spec/containers/1/image".to_owned(), "r.io/b".to_owned()),
                (
                    "/spec/initContainers/0/image".to_owned(),
                    "init:1".to_owned()
                ),
                (
                    "/spec/ephemeralContainers/0/image".to_owned(),
                    "busybox".to_owned()
                ),
            ]
        );
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": pod}}}});
        let r = parse(&review("CronJob", cron)).unwrap();
        assert_eq!(
            r.images[0].0,
            "/spec/jobTemplate/spec/template/spec/containers/0/image"
        );
        let r = parse(&review("ConfigMap", json!({"data": {}}))).unwrap();
        assert!(r.images.is_empty());
    }

    #[test]
    fn malformed_reviews_say_what_is_wrong() {
        assert!(parse(b"{").unwrap_err().contains("not JSON"));
        let v1beta1 = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#;
        assert!(parse(v1beta1).unwrap_err().contains("admission.k8s.io/v1"));
        let no_uid = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"kind":"Pod"}}}"#;
        assert!(parse(no_uid).unwrap_err().contains("uid"));
        let bad = review("Pod", json!({"spec": {"containers": [{"image": 7}]}}));
        assert!(parse(&bad)
            .unwrap_err()
            .contains("/spec/containers/0/image"));
    }

    #[test]
    fn an_answer_echoes_the_uid_and_carries_its_patch() {
        let a = answer(
            "u1",
            None,
            &[("/spec/containers/0/image".into(), "r.io/x:1".into())],
        );
        assert_eq!(a["response"]["uid"], "u1");
        assert_eq!(a["response"]["allowed"], true);
        let patch = base64::engine::general_purpose::STANDARD
            .decode(a["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(patch[0]["op"], "replace");
        assert_eq!(patch[0]["value"], "r.io/x:1");
        let refused = answer("u2", Some("no"), &[]);
        assert_eq!(refused["response"]["allowed"], false);
        assert_eq!(refused["response"]["status"]["message"], "no");
        assert!(refused["response"].get("patch").is_none());
    }
}
