//! The kubelet image credential provider (`credentialprovider.kubelet.k8s.io/v1`):
//! a `CredentialProviderRequest` on stdin, ResolvePull, and the
//! `CredentialProviderResponse` on stdout.

use std::io::{Read, Write};
use std::time::Duration;

use serde::Deserialize;

use super::connect::{Connection, Discovery};
use super::{Error, Result};
use crate::adapters::{kubernetes, PullAuth};
use crate::cli::args::ConnectionArgs;
use crate::pb;

/// The only API version this provider speaks.
pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The request's kind.
pub const REQUEST_KIND: &str = "CredentialProviderRequest";

/// How long a kubelet caches an answer built here (Cattle environments);
/// the server uses the same default for Kubernetes ones.
const DEFAULT_CACHE: Duration = Duration::from_secs(60);
/// A request is one small JSON object.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    kind: Option<String>,
    api_version: Option<String>,
    image: Option<String>,
}

/// Parses a `CredentialProviderRequest` and returns its image.
///
/// # Errors
/// Not JSON, another kind or API version, or no image: a usage error that
/// says which.
pub fn parse_request(text: &str) -> Result<String> {
    let request: Request = serde_json::from_str(text)
        .map_err(|e| Error::Usage(format!("the request on stdin is not a {REQUEST_KIND}: {e}")))?;
    match request.kind.as_deref() {
        Some(REQUEST_KIND) => {}
        other => {
            return Err(Error::Usage(format!(
                "the request's kind is {other:?}, expected {REQUEST_KIND:?}"
            )))
        }
    }
    match request.api_version.as_deref() {
        Some(API_VERSION) => {}
        other => {
            return Err(Error::Usage(format!(
                "the request's apiVersion is {other:?}; this provider speaks {API_VERSION:?} \
                 (set apiVersion: {API_VERSION} in the CredentialProviderConfig)"
            )))
        }
    }
    match request.image {
        Some(image) if !image.trim().is_empty() => Ok(image.trim().to_owned()),
        _ => Err(Error::Usage("the request has no image".to_owned())),
    }
}

/// Returns the response to print for a ResolvePull answer: the server's
/// own for Kubernetes environments, one built from the credential otherwise.
///
/// # Errors
/// A denial is [`Error::Denied`] with the server's message.
pub fn response(r: &pb::ResolvePullResponse) -> Result<String> {
    match &r.decision {
        Some(pb::resolve_pull_response::Decision::Allowed(a)) => match &a.orchestrator {
            Some(pb::pull_allowed::Orchestrator::Kubernetes(k))
                if !k.credential_provider_response.is_empty() =>
            {
                Ok(k.credential_provider_response.clone())
            }
            _ => Ok(match &a.credential {
                Some(c) => kubernetes::credential_provider_response(
                    &PullAuth {
                        registry: &r.registry,
                        username: &c.username,
                        password: &c.password,
                        email: &c.email,
                    },
                    DEFAULT_CACHE,
                    if r.repository_scope.is_empty() {
                        kubernetes::CacheKey::Registry
                    } else {
                        kubernetes::CacheKey::Image(&r.repository_scope)
                    },
                ),
                None => kubernetes::anonymous_provider_response(DEFAULT_CACHE),
            }),
        },
        Some(pb::resolve_pull_response::Decision::Denied(d)) => {
            let reason = pb::DenyReason::try_from(d.reason)
                .map(|r| r.as_str_name().to_owned())
                .unwrap_or_else(|_| d.reason.to_string());
            Err(Error::Denied(format!(
                "{}: {} ({reason})",
                r.resolved_image, d.message
            )))
        }
        None => Err(Error::Usage(
            "registrar answered without a decision".to_owned(),
        )),
    }
}

/// Runs the provider: request on stdin, response on stdout.
///
/// # Errors
/// A bad request, an unreachable server, a refusal or a denial; the kubelet
/// then fails the pull and logs the message printed on stderr.
pub async fn run(args: &ConnectionArgs) -> Result<()> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST)
        .read_to_string(&mut text)
        .map_err(|source| Error::Io {
            context: "reading the request from standard input".to_owned(),
            source,
        })?;
    let image = parse_request(&text)?;
    let conn = Connection::open(args, Discovery::GivenOnly).await?;
    let answer = conn
        .answer(conn.pulls().resolve_pull(pb::ResolvePullRequest {
            min_revision: 0,
            environment_id: String::new(),
            target: Some(pb::resolve_pull_request::Target::Image(image)),
        }))
        .await?;
    let body = response(&answer)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{body}")
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            context: "writing the response".to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubelet_request_yields_its_image() {
        let image = parse_request(
            r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"reg:5000/team/app:1"}"#,
        )
        .unwrap();
        assert_eq!(image, "reg:5000/team/app:1");
    }

    #[test]
    fn other_kinds_versions_and_empty_images_are_refused() {
        for (text, says) in [
            (
                r#"{"kind":"Pod","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"x"}"#,
                "kind",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","image":"x"}"#,
                "apiVersion",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}"#,
                "no image",
            ),
            ("not json", "not a CredentialProviderRequest"),
        ] {
            let e = parse_request(text).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    fn answer(decision: pb::resolve_pull_response::Decision) -> pb::ResolvePullResponse {
        pb::ResolvePullResponse {
            revision: 3,
            resolved_image: "reg:5000/app:1".into(),
            registry: "reg:5000".into(),
            decision: Some(decision),
            repository_scope: String::new(),
        }
    }

    #[test]
    fn a_kubernetes_answer_is_passed_on_verbatim() {
        let body = r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"1m0s","auth":{}}"#;
        let r = answer(pb::resolve_pull_response::Decision::Allowed(
            pb::PullAllowed {
                orchestrator: Some(pb::pull_allowed::Orchestrator::Kubernetes(
                    pb::KubernetesAuth {
                        docker_config_json: String::new(),
                        credential_provider_response: body.into(),
                    },
                )),
                ..Default::default()
            },
        ));
        assert_eq!(response(&r).unwrap(), body);
    }

    #[test]
    fn a_cattle_answer_becomes_a_kubelet_response() {
        let r = answer(pb::resolve_pull_response::Decision::Allowed(
            pb::PullAllowed {
                credential: Some(pb::PullCredential {
                    username: "alice".into(),
                    password: "s3cret".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ));
        let v: serde_json::Value = serde_json::from_str(&response(&r).unwrap()).unwrap();
        assert_eq!(v["kind"], "CredentialProviderResponse");
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["auth"]["reg:5000"]["username"], "alice");
        assert_eq!(v["auth"]["reg:5000"]["password"], "s3cret");
    }

    #[test]
    fn a_cattle_answer_scoped_to_a_repository_is_cached_per_image() {
        let mut r = answer(pb::resolve_pull_response::Decision::Allowed(
            pb::PullAllowed {
                credential: Some(pb::PullCredential {
                    username: "alice".into(),
                    password: "s3cret".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ));
        r.repository_scope = "reg:5000/myorg/app".into();
        let v: serde_json::Value = serde_json::from_str(&response(&r).unwrap()).unwrap();
        assert_eq!(v["cacheKeyType"], "Image");
        let keys: Vec<&String> = v["auth"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["reg:5000/myorg/app"]);
    }

    #[test]
    fn a_denial_is_an_error_naming_the_reason() {
        let r = answer(pb::resolve_pull_response::Decision::Denied(
            pb::PullDenied {
                reason: pb::DenyReason::NotWhitelisted as i32,
                message: "The provided registry is not whitelisted".into(),
            },
        ));
        let e = response(&r).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("DENY_REASON_NOT_WHITELISTED"), "{e}");
    }
}
