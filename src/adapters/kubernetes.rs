//! Kubernetes translations: `.dockerconfigjson` pull secrets and the kubelet
//! image credential provider (`credentialprovider.kubelet.k8s.io/v1`) responses.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{docker_config_key, json_string, PullAuth, DOCKER_HUB};

/// The Go `time.Duration` ceiling (`math.MaxInt64` nanoseconds) in whole seconds.
const GO_MAX_DURATION_SECS: u64 = (i64::MAX as u64) / 1_000_000_000;

/// Renders a `.dockerconfigjson` document for these credentials.
///
/// Shape: `{"auths":{KEY:{"username":..,"password":..,"email":..,"auth":..}}}`
/// with `KEY` = [`docker_config_key`] of the registry, `email` omitted when
/// empty and `auth` = standard base64 of `username:password`. Entries are
/// sorted by key; when two entries share a key the first one wins, so callers
/// pass credentials in priority order. The JSON is compact.
#[must_use]
pub fn docker_config_json(entries: &[PullAuth<'_>]) -> String {
    let mut by_key: BTreeMap<String, &PullAuth<'_>> = BTreeMap::new();
    for entry in entries {
        by_key
            .entry(docker_config_key(entry.registry))
            .or_insert(entry);
    }
    let body: Vec<String> = by_key
        .iter()
        .map(|(key, auth)| {
            let email = if auth.email.is_empty() {
                String::new()
            } else {
                format!(",\"email\":{}", json_string(auth.email))
            };
            let basic = STANDARD.encode(format!("{}:{}", auth.username, auth.password));
            format!(
                "{}:{{\"username\":{},\"password\":{}{},\"auth\":{}}}",
                json_string(key),
                json_string(auth.username),
                json_string(auth.password),
                email,
                json_string(&basic),
            )
        })
        .collect();
    format!("{{\"auths\":{{{}}}}}", body.join(","))
}

/// Renders a kubelet `CredentialProviderResponse` granting this credential.
///
/// The `auth` keys are registry addresses as the kubelet matches images
/// (`host[:port]`, no scheme). Docker Hub gets both `docker.io` and
/// `index.docker.io`, so images written as `nginx`, `docker.io/x` and
/// `index.docker.io/x` all match. With [`CacheKey::Registry`] one response
/// serves every image of that registry for `cache_duration` (see
/// [`go_duration`] for its rounding; `0s` tells the kubelet not to cache);
/// with [`CacheKey::Image`] the `auth` key is the image's repository and
/// `cacheKeyType` is `Image`, so the kubelet neither caches nor matches the
/// credential for another repository of the registry.
#[must_use]
pub fn credential_provider_response(
    auth: &PullAuth<'_>,
    cache_duration: Duration,
    key: CacheKey<'_>,
) -> String {
    let scope = match key {
        CacheKey::Registry => auth.registry,
        CacheKey::Image(repository) => repository,
    };
    let hub_path = scope
        .strip_prefix(DOCKER_HUB)
        .filter(|_| auth.registry == DOCKER_HUB);
    let keys: Vec<String> = match hub_path {
        Some(path) => vec![format!("docker.io{path}"), format!("{DOCKER_HUB}{path}")],
        None => vec![scope.to_owned()],
    };
    let entry = format!(
        "{{\"username\":{},\"password\":{}}}",
        json_string(auth.username),
        json_string(auth.password)
    );
    let body: Vec<String> = keys
        .iter()
        .map(|key| format!("{}:{}", json_string(key), entry))
        .collect();
    let key_type = match key {
        CacheKey::Registry => "Registry",
        CacheKey::Image(_) => "Image",
    };
    provider_response(&body.join(","), cache_duration, key_type)
}

/// What a kubelet caches a provider's answer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKey<'a> {
    /// Every image of the registry.
    Registry,
    /// One repository (`registry/path`, no tag or digest).
    Image(&'a str),
}

/// Renders an empty successful `CredentialProviderResponse` (anonymous pull).
///
/// `auth` is `{}`; the cache duration lets the kubelet remember that the
/// registry needs no credentials.
#[must_use]
pub fn anonymous_provider_response(cache_duration: Duration) -> String {
    provider_response("", cache_duration, "Registry")
}

fn provider_response(auth_body: &str, cache_duration: Duration, key_type: &str) -> String {
    format!(
        "{{\"kind\":\"CredentialProviderResponse\",\
         \"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\
         \"cacheKeyType\":{},\
         \"cacheDuration\":{},\
         \"auth\":{{{}}}}}",
        json_string(key_type),
        json_string(&go_duration(cache_duration)),
        auth_body
    )
}

/// Formats a duration as Go's `time.Duration.String()` does for whole seconds.
///
/// Examples: `0s`, `1s`, `59s`, `1m30s`, `6h0m0s`, `26h3m4s`. Sub-second parts
/// are truncated (so anything under a second is `0s`), because the kubelet
/// caches by whole seconds in practice and Go's `1.5s`/`500ms` forms add
/// nothing here. Durations beyond Go's `time.Duration` range (about 292
/// years) are clamped to its largest whole second, so Go can always parse
/// the result.
#[must_use]
pub fn go_duration(d: Duration) -> String {
    let total = d.as_secs().min(GO_MAX_DURATION_SECS);
    let hours = total / 3600;
    let minutes = (total % 3600) / 60;
    let seconds = total % 60;
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// Returns how long the kubelet may cache a credential.
///
/// With an expiry that is half the remaining life, capped at `default` so a
/// far-off expiry never caches longer than a credential that never expires;
/// without one it is `default`. It is zero once the credential has expired
/// (or `expire` is not after `now`), which tells the kubelet not to cache.
#[must_use]
pub fn cache_duration(now: SystemTime, expire: Option<SystemTime>, default: Duration) -> Duration {
    match expire {
        None => default,
        Some(expire) => match expire.duration_since(now) {
            Ok(remaining) => (remaining / 2).min(default),
            Err(_) => Duration::ZERO,
        },
    }
}

/// Renders a `kubernetes.io/dockerconfigjson` Secret manifest as compact JSON.
///
/// `metadata.namespace` is omitted when empty (the namespace then comes from
/// the apply context); the Secret is labelled
/// `app.kubernetes.io/managed-by: registrar`, and `data..dockerconfigjson` is
/// the standard base64 of `docker_config_json` (see [`docker_config_json`]).
#[must_use]
pub fn pull_secret_manifest(name: &str, namespace: &str, docker_config_json: &str) -> String {
    let namespace = if namespace.is_empty() {
        String::new()
    } else {
        format!(",\"namespace\":{}", json_string(namespace))
    };
    format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\
         \"metadata\":{{\"name\":{}{},\"labels\":{{\"app.kubernetes.io/managed-by\":\"registrar\"}}}},\
         \"type\":\"kubernetes.io/dockerconfigjson\",\
         \"data\":{{\".dockerconfigjson\":{}}}}}",
        json_string(name),
        namespace,
        json_string(&STANDARD.encode(docker_config_json)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn auth<'a>(registry: &'a str, username: &'a str, password: &'a str) -> PullAuth<'a> {
        PullAuth {
            registry,
            username,
            password,
            email: "",
        }
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn docker_config_json_golden() {
        let out = docker_config_json(&[
            auth("reg.example.com:5000", "alice", "pw\"1"),
            PullAuth {
                registry: DOCKER_HUB,
                username: "bob",
                password: "hub",
                email: "bob@example.com",
            },
        ]);
        // base64("alice:pw\"1") = YWxpY2U6cHciMQ==, base64("bob:hub") = Ym9iOmh1Yg==
        assert_eq!(
            out,
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"bob","password":"hub","email":"bob@example.com","auth":"Ym9iOmh1Yg=="},"reg.example.com:5000":{"username":"alice","password":"pw\"1","auth":"YWxpY2U6cHciMQ=="}}}"#
        );
        let v = parse(&out);
        let hub = &v["auths"]["https://index.docker.io/v1/"];
        assert_eq!(hub["username"], "bob");
        assert_eq!(hub["password"], "hub");
        assert_eq!(hub["email"], "bob@example.com");
        let basic = STANDARD.decode(hub["auth"].as_str().unwrap()).unwrap();
        assert_eq!(basic, b"bob:hub");
        let reg = &v["auths"]["reg.example.com:5000"];
        assert_eq!(reg["password"], "pw\"1");
        assert!(reg.get("email").is_none());
    }

    #[test]
    fn docker_config_json_empty_and_duplicates() {
        assert_eq!(docker_config_json(&[]), r#"{"auths":{}}"#);
        let out = docker_config_json(&[auth("r.io", "first", "1"), auth("r.io", "second", "2")]);
        let v = parse(&out);
        assert_eq!(v["auths"].as_object().unwrap().len(), 1);
        assert_eq!(v["auths"]["r.io"]["username"], "first");
    }

    #[test]
    fn docker_config_json_sorts_by_key() {
        let out = docker_config_json(&[
            auth("zeta.io", "u", "p"),
            auth("[::1]:5000", "u", "p"),
            auth("10.0.0.1:5000", "u", "p"),
        ]);
        let a = out.find("\"10.0.0.1:5000\"").unwrap();
        let b = out.find("\"[::1]:5000\"").unwrap();
        let c = out.find("\"zeta.io\"").unwrap();
        assert!(a < b && b < c, "{out}");
    }

    #[test]
    fn credential_provider_response_golden() {
        let out = credential_provider_response(
            &auth("reg.example.com:5000", "alice", "s\\e\"c"),
            Duration::from_secs(90),
            CacheKey::Registry,
        );
        assert_eq!(
            out,
            r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"1m30s","auth":{"reg.example.com:5000":{"username":"alice","password":"s\\e\"c"}}}"#
        );
        let v = parse(&out);
        assert_eq!(v["kind"], "CredentialProviderResponse");
        assert_eq!(v["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
        assert_eq!(v["cacheKeyType"], "Registry");
        assert_eq!(v["cacheDuration"], "1m30s");
        assert_eq!(v["auth"]["reg.example.com:5000"]["password"], "s\\e\"c");
    }

    #[test]
    fn credential_provider_response_hub_has_both_keys() {
        let out = credential_provider_response(
            &auth(DOCKER_HUB, "bob", "pw"),
            Duration::from_secs(6 * 3600),
            CacheKey::Registry,
        );
        assert_eq!(
            out,
            r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"6h0m0s","auth":{"docker.io":{"username":"bob","password":"pw"},"index.docker.io":{"username":"bob","password":"pw"}}}"#
        );
        let v = parse(&out);
        let keys: Vec<&String> = v["auth"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["docker.io", "index.docker.io"]);
        for key in keys {
            assert_eq!(v["auth"][key]["username"], "bob");
            assert_eq!(v["auth"][key]["password"], "pw");
        }
    }

    #[test]
    fn an_image_scoped_response_names_only_its_repository() {
        let out = credential_provider_response(
            &auth("quay.io", "alice", "pw"),
            Duration::from_secs(60),
            CacheKey::Image("quay.io/myorg/app"),
        );
        let v = parse(&out);
        assert_eq!(v["cacheKeyType"], "Image");
        let keys: Vec<&String> = v["auth"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["quay.io/myorg/app"]);
        let hub = credential_provider_response(
            &auth(DOCKER_HUB, "bob", "pw"),
            Duration::from_secs(60),
            CacheKey::Image("index.docker.io/myorg/app"),
        );
        let v = parse(&hub);
        let keys: Vec<&String> = v["auth"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["docker.io/myorg/app", "index.docker.io/myorg/app"]);
    }

    #[test]
    fn anonymous_provider_response_golden() {
        let out = anonymous_provider_response(Duration::from_secs(300));
        assert_eq!(
            out,
            r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"5m0s","auth":{}}"#
        );
        let v = parse(&out);
        assert!(v["auth"].as_object().unwrap().is_empty());
    }

    #[test]
    fn go_duration_table() {
        let table = [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m0s"),
            (90, "1m30s"),
            (3600, "1h0m0s"),
            (6 * 3600, "6h0m0s"),
            (12 * 3600, "12h0m0s"),
            (26 * 3600 + 3 * 60 + 4, "26h3m4s"),
        ];
        for (secs, want) in table {
            assert_eq!(go_duration(Duration::from_secs(secs)), want, "{secs}");
        }
    }

    #[test]
    fn go_duration_truncates_and_clamps() {
        assert_eq!(go_duration(Duration::from_millis(999)), "0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1s");
        assert_eq!(go_duration(Duration::MAX), "2562047h47m16s");
    }

    #[test]
    fn cache_duration_rules() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let default = Duration::from_secs(6 * 3600);
        let hours = |h: u64| Duration::from_secs(h * 3600);
        assert_eq!(cache_duration(now, Some(now + hours(2)), default), hours(1));
        assert_eq!(cache_duration(now, Some(now + hours(48)), default), default);
        assert_eq!(cache_duration(now, Some(now), default), Duration::ZERO);
        assert_eq!(
            cache_duration(now, Some(now - hours(1)), default),
            Duration::ZERO
        );
        assert_eq!(cache_duration(now, None, default), default);
        assert_eq!(
            go_duration(cache_duration(now, Some(now - hours(1)), default)),
            "0s"
        );
    }

    #[test]
    fn pull_secret_manifest_golden() {
        let config = docker_config_json(&[auth("r.io", "u", "p")]);
        let out = pull_secret_manifest("regcred", "team-a", &config);
        let encoded = STANDARD.encode(&config);
        assert_eq!(
            out,
            format!(
                r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"regcred","namespace":"team-a","labels":{{"app.kubernetes.io/managed-by":"registrar"}}}},"type":"kubernetes.io/dockerconfigjson","data":{{".dockerconfigjson":"{encoded}"}}}}"#
            )
        );
        let v = parse(&out);
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(v["metadata"]["name"], "regcred");
        assert_eq!(v["metadata"]["namespace"], "team-a");
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "registrar"
        );
        let data = STANDARD
            .decode(v["data"][".dockerconfigjson"].as_str().unwrap())
            .unwrap();
        let inner: Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(inner["auths"]["r.io"]["username"], "u");
        assert_eq!(inner["auths"]["r.io"]["password"], "p");
    }

    #[test]
    fn pull_secret_manifest_omits_empty_namespace() {
        let v = parse(&pull_secret_manifest("regcred", "", "{}"));
        assert!(v["metadata"].get("namespace").is_none());
        assert_eq!(v["data"][".dockerconfigjson"], "e30=");
    }
}
