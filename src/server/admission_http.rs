//! `--admission-listen`: Kubernetes admission webhooks over HTTPS (rustls),
//! `POST /admission/v1/ENVIRONMENT_ID/validate` and `/mutate`.
//!
//! validate refuses a pod (or pod template) with any image ResolvePull
//! would deny, naming each image and the Rancher page's reason; mutate
//! rewrites each image that names no registry to ResolvePull's fully
//! qualified image, so `registry.default` holds on Kubernetes. Both answer
//! from one view of the log (the same revision, the same answer), dry runs
//! the same as others. On UPDATE only the images the object did not have
//! before are judged. A malformed review is HTTP 400 with a message; an
//! unknown or non-Kubernetes environment is a refusal of validate, and a
//! warning of mutate (which never refuses).

use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Limited};
use tokio::net::TcpListener;

use super::http1::{self, text, Reply};
use crate::adapters::admission::{self, MAX_REVIEW_BYTES};
use crate::app::{App, NotAdmissible};

/// The TLS configuration of the webhook listener.
pub(super) fn tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, super::Error> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| super::Error::Tls {
            path: path.to_path_buf(),
            source,
        })
    };
    let invalid = |path: &Path, what: &str| super::Error::Tls {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("no PEM {what} in it")),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|_| invalid(cert, "CERTIFICATE"))?;
    if chain.is_empty() {
        return Err(invalid(cert, "CERTIFICATE"));
    }
    let private =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| invalid(key, "PRIVATE KEY"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(cert, &e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(|e| super::Error::Tls {
        path: key.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the webhooks until the task is aborted.
pub(super) async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: App) {
    let app = Arc::new(app);
    http1::serve("admission", listener, Some(tls), move |request| {
        let app = Arc::clone(&app);
        async move { handle(&app, request).await }
    })
    .await;
}

/// Which webhook a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Validate,
    Mutate,
}

fn route(path: &str) -> Option<(&str, Hook)> {
    let rest = path.strip_prefix("/admission/v1/")?;
    let (environment_id, hook) = rest.split_once('/')?;
    if environment_id.is_empty() || environment_id.len() > 128 {
        return None;
    }
    match hook {
        "validate" => Some((environment_id, Hook::Validate)),
        "mutate" => Some((environment_id, Hook::Mutate)),
        _ => None,
    }
}

async fn handle(app: &App, request: http::Request<hyper::body::Incoming>) -> Reply {
    let Some((environment_id, hook)) = route(request.uri().path()) else {
        return text(
            http::StatusCode::NOT_FOUND,
            "not found: the webhooks are POST /admission/v1/ENVIRONMENT_ID/validate and /mutate",
        );
    };
    let environment_id = environment_id.to_owned();
    if request.method() != http::Method::POST {
        return text(http::StatusCode::METHOD_NOT_ALLOWED, "only POST");
    }
    let body = match Limited::new(request.into_body(), MAX_REVIEW_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return text(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the review could not be read whole (at most {MAX_REVIEW_BYTES} bytes): {e}"
                ),
            )
        }
    };
    let review = match admission::parse(&body) {
        Ok(review) => review,
        Err(message) => {
            return text(
                http::StatusCode::BAD_REQUEST,
                &format!("malformed AdmissionReview: {message}"),
            )
        }
    };
    let answer = judge(app, &environment_id, hook, &review);
    http1::reply(
        http::StatusCode::OK,
        "application/json",
        serde_json::to_vec(&answer).unwrap_or_default(),
    )
}

fn judge(
    app: &App,
    environment_id: &str,
    hook: Hook,
    review: &admission::Review,
) -> serde_json::Value {
    // Images the object already had before an UPDATE were judged then.
    let new: Vec<&(String, String)> = review
        .images
        .iter()
        .filter(|(_, image)| !review.old_images.contains(image))
        .collect();
    let images: Vec<&str> = new.iter().map(|(_, i)| i.as_str()).collect();
    let cannot = |why: String| match hook {
        Hook::Validate => admission::answer(&review.uid, Some(&why), &[]),
        // The mutating hook never refuses: the pod keeps its images as
        // written, and the validating hook judges them.
        Hook::Mutate => admission::answer_with_warning(&review.uid, None, &[], Some(&why)),
    };
    let admission = match app.admit(environment_id, &images) {
        Ok(Ok(admission)) => admission,
        Ok(Err(NotAdmissible::Unknown)) => {
            return cannot(format!(
                "registrar: environment {environment_id} does not exist; check the webhook's URL"
            ))
        }
        Ok(Err(NotAdmissible::NotKubernetes)) => {
            return cannot(format!(
                "registrar: environment {environment_id} is not a Kubernetes environment; admission judges Kubernetes environments only"
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "admission could not judge");
            return cannot("registrar could not judge the images".to_owned());
        }
    };
    match hook {
        Hook::Validate => {
            let refusals: Vec<String> = admission
                .verdicts
                .iter()
                .filter_map(|v| {
                    v.refused
                        .as_ref()
                        .map(|why| format!("image {:?}: {why}", v.image))
                })
                .collect();
            let refusal = (!refusals.is_empty()).then(|| refusals.join("; "));
            admission::answer(&review.uid, refusal.as_deref(), &[])
        }
        Hook::Mutate => {
            let replacements: Vec<(String, String)> = new
                .iter()
                .zip(&admission.verdicts)
                .filter(|(_, v)| {
                    !v.names_registry && !v.resolved_image.is_empty() && v.resolved_image != v.image
                })
                .map(|((pointer, _), v)| (pointer.clone(), v.resolved_image.clone()))
                .collect();
            admission::answer(&review.uid, None, &replacements)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_an_environment_and_a_hook() {
        assert_eq!(
            route("/admission/v1/env1/validate"),
            Some(("env1", Hook::Validate))
        );
        assert_eq!(
            route("/admission/v1/env1/mutate"),
            Some(("env1", Hook::Mutate))
        );
        for bad in [
            "/admission/v1//validate",
            "/admission/v1/env1/other",
            "/admission/v1/env1",
            "/",
        ] {
            assert_eq!(route(bad), None, "{bad}");
        }
    }
}
