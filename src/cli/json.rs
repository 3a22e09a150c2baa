//! `--json` output: the API's messages in proto3 JSON form (lowerCamelCase
//! names, enum names, RFC 3339 timestamps, 64-bit integers as strings),
//! with default values written out so scripts always find every key.

use serde_json::{json, Map, Value};

use super::table::rfc3339;
use crate::pb;

fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(&E) -> &'static str) -> Value {
    match E::try_from(value) {
        Ok(e) => Value::from(name(&e)),
        Err(_) => Value::from(value),
    }
}

fn put_time(map: &mut Map<String, Value>, key: &str, t: Option<&prost_types::Timestamp>) {
    if let Some(t) = t {
        map.insert(key.to_owned(), Value::from(rfc3339(t)));
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// An environment.
pub fn environment(e: &pb::Environment) -> Value {
    let mut m = object(json!({
        "id": e.id,
        "name": e.name,
        "orchestration": enum_name(e.orchestration, pb::Orchestration::as_str_name),
    }));
    put_time(&mut m, "createTime", e.create_time.as_ref());
    Value::Object(m)
}

/// A registry (it has no password).
pub fn registry(r: &pb::Registry) -> Value {
    let mut m = object(json!({
        "id": r.id,
        "environmentId": r.environment_id,
        "kind": enum_name(r.kind, pb::RegistryKind::as_str_name),
        "address": r.address,
        "state": enum_name(r.state, pb::RegistryState::as_str_name),
        "email": r.email,
        "username": r.username,
        "insecure": r.insecure,
        "caCertificatePem": r.ca_certificate_pem,
        "credentialId": r.credential_id,
        "ecrAccessKeyId": r.ecr_access_key_id,
        "lastRefreshError": r.last_refresh_error,
    }));
    put_time(&mut m, "createTime", r.create_time.as_ref());
    put_time(&mut m, "updateTime", r.update_time.as_ref());
    put_time(&mut m, "expireTime", r.expire_time.as_ref());
    if let Some(v) = &r.last_verification {
        let mut verification = object(json!({ "ok": v.ok, "message": v.message }));
        put_time(&mut verification, "time", v.time.as_ref());
        m.insert("lastVerification".to_owned(), Value::Object(verification));
    }
    Value::Object(m)
}

/// The settings.
pub fn settings(s: &pb::Settings) -> Value {
    json!({ "defaultRegistry": s.default_registry, "whitelist": s.whitelist })
}

/// A token's description (never its secret).
pub fn token(t: &pb::Token) -> Value {
    let mut m = object(json!({
        "tokenId": t.token_id,
        "role": enum_name(t.role, pb::Role::as_str_name),
        "environmentId": t.environment_id,
        "description": t.description,
    }));
    put_time(&mut m, "createTime", t.create_time.as_ref());
    Value::Object(m)
}

/// A change of an environment's history.
pub fn history_event(e: &pb::HistoryEvent) -> Value {
    let mut m = object(json!({
        "position": e.position.to_string(),
        "actor": e.actor,
        "action": enum_name(e.action, pb::HistoryAction::as_str_name),
        "registryId": e.registry_id,
        "address": e.address,
        "changedFields": e.changed_fields,
        "credentialId": e.credential_id,
        "message": e.message,
        "requestId": e.request_id,
    }));
    put_time(&mut m, "time", e.time.as_ref());
    Value::Object(m)
}

/// A freshly issued token, with its secret (shown once).
pub fn created_token(t: &pb::CreateTokenResponse) -> Value {
    json!({ "tokenId": t.token_id, "token": t.token })
}

/// A ResolvePull answer, with the credential when one is handed out.
pub fn resolve(r: &pb::ResolvePullResponse) -> Value {
    let mut m = object(json!({
        "revision": r.revision.to_string(),
        "resolvedImage": r.resolved_image,
        "registry": r.registry,
    }));
    match &r.decision {
        Some(pb::resolve_pull_response::Decision::Allowed(a)) => {
            m.insert("allowed".to_owned(), allowed(a));
        }
        Some(pb::resolve_pull_response::Decision::Denied(d)) => {
            m.insert(
                "denied".to_owned(),
                json!({
                    "reason": enum_name(d.reason, pb::DenyReason::as_str_name),
                    "message": d.message,
                }),
            );
        }
        None => {}
    }
    Value::Object(m)
}

fn allowed(a: &pb::PullAllowed) -> Value {
    let mut m = object(json!({
        "insecure": a.insecure,
        "caCertificatePem": a.ca_certificate_pem,
    }));
    if let Some(c) = &a.credential {
        m.insert(
            "credential".to_owned(),
            json!({
                "registryId": c.registry_id,
                "credentialId": c.credential_id,
                "email": c.email,
                "username": c.username,
                "password": c.password,
            }),
        );
    }
    put_time(&mut m, "expireTime", a.expire_time.as_ref());
    match &a.orchestrator {
        Some(pb::pull_allowed::Orchestrator::Cattle(c)) => {
            let config = c.auth_config.as_ref().map(|a| {
                json!({
                    "username": a.username,
                    "password": a.password,
                    "email": a.email,
                    "serverAddress": a.server_address,
                })
            });
            let mut cattle = object(json!({ "xRegistryAuth": c.x_registry_auth }));
            if let Some(config) = config {
                cattle.insert("authConfig".to_owned(), config);
            }
            m.insert("cattle".to_owned(), Value::Object(cattle));
        }
        Some(pb::pull_allowed::Orchestrator::Kubernetes(k)) => {
            m.insert(
                "kubernetes".to_owned(),
                json!({
                    "dockerConfigJson": k.docker_config_json,
                    "credentialProviderResponse": k.credential_provider_response,
                }),
            );
        }
        None => {}
    }
    Value::Object(m)
}

/// One message of a Watch stream.
pub fn watch(w: &pb::WatchResponse) -> Value {
    let mut m = object(json!({ "token": w.token }));
    match &w.event {
        Some(pb::watch_response::Event::RegistryChanged(r)) => {
            m.insert("registryChanged".to_owned(), registry(r));
        }
        Some(pb::watch_response::Event::RegistryRemoved(r)) => {
            m.insert(
                "registryRemoved".to_owned(),
                json!({ "id": r.id, "address": r.address }),
            );
        }
        Some(pb::watch_response::Event::SettingsChanged(s)) => {
            m.insert("settingsChanged".to_owned(), settings(s));
        }
        Some(pb::watch_response::Event::Bookmark(b)) => {
            m.insert(
                "bookmark".to_owned(),
                json!({ "initialStateDone": b.initial_state_done }),
            );
        }
        None => {}
    }
    Value::Object(m)
}

/// A host file; `content` only when asked, since k3s files may hold credentials.
pub fn host_file(f: &pb::HostFile, with_content: bool) -> Value {
    let mut m = object(json!({ "path": f.path, "mode": f.mode }));
    if with_content {
        m.insert("content".to_owned(), Value::from(f.content.clone()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_use_proto3_json_names_and_enum_names() {
        let r = pb::Registry {
            id: "r1".into(),
            kind: pb::RegistryKind::Custom as i32,
            state: pb::RegistryState::Inactive as i32,
            create_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let v = registry(&r);
        assert_eq!(v["kind"], "REGISTRY_KIND_CUSTOM");
        assert_eq!(v["state"], "REGISTRY_STATE_INACTIVE");
        assert_eq!(v["environmentId"], "");
        assert_eq!(v["createTime"], "1970-01-01T00:00:00Z");
        assert!(v.get("expireTime").is_none());
        assert!(v.get("password").is_none());
    }

    #[test]
    fn a_denied_answer_names_its_reason_and_revisions_are_strings() {
        let r = pb::ResolvePullResponse {
            revision: 7,
            resolved_image: "docker.io/library/nginx:latest".into(),
            registry: "index.docker.io".into(),
            decision: Some(pb::resolve_pull_response::Decision::Denied(
                pb::PullDenied {
                    reason: pb::DenyReason::NotWhitelisted as i32,
                    message: "The provided registry is not whitelisted".into(),
                },
            )),
            repository_scope: String::new(),
        };
        let v = resolve(&r);
        assert_eq!(v["revision"], "7");
        assert_eq!(v["denied"]["reason"], "DENY_REASON_NOT_WHITELISTED");
        assert!(v.get("allowed").is_none());
    }

    #[test]
    fn unknown_enum_values_are_kept_as_numbers() {
        let e = pb::Environment {
            orchestration: 42,
            ..Default::default()
        };
        assert_eq!(environment(&e)["orchestration"], 42);
    }
}
