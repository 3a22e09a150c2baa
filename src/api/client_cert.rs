//! Agents authenticated by their TLS client certificate.
//!
//! With `--tls-client-ca`, rustls verifies a certificate the client presents
//! against that CA during the handshake. A verified certificate whose URI
//! subject alternative name is
//! `spiffe://<trust-domain>/registrar/agent/<environment-id>` authenticates
//! its holder as an agent of that environment, exactly as an agent token of
//! it would. The trust domain is not checked: the CA decides who gets such a
//! name, and the form is the one SPIFFE issuers (SPIRE, cert-manager's csi
//! driver) already write.

use sha2::{Digest, Sha256};
use tonic::Status;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use crate::domain::access::Principal;
use crate::domain::event::Role;

/// The path prefix of an agent's SPIFFE ID, before the environment id.
pub(crate) const AGENT_PATH: &str = "/registrar/agent/";

/// Returns the principal a verified client certificate (DER) stands for.
///
/// # Errors
/// UNAUTHENTICATED when the certificate cannot be read, names no agent, or
/// names agents of more than one environment.
pub(crate) fn principal(der: &[u8]) -> Result<Principal, Status> {
    let cert = Certificate::from_der(der)
        .map_err(|_| Status::unauthenticated("the client certificate could not be read"))?;
    let san = cert
        .tbs_certificate()
        .get_extension::<SubjectAltName>()
        .map_err(|_| {
            Status::unauthenticated(
                "the client certificate's subject alternative names could not be read",
            )
        })?;
    let mut environments: Vec<String> = Vec::new();
    for name in san.iter().flat_map(|(_, names)| names.0.iter()) {
        let GeneralName::UniformResourceIdentifier(uri) = name else {
            continue;
        };
        if let Some(env) = agent_environment(uri.as_str()) {
            if !environments.iter().any(|e| e == env) {
                environments.push(env.to_owned());
            }
        }
    }
    match environments.len() {
        0 => Err(Status::unauthenticated(format!(
            "the client certificate names no agent: give it the URI SAN spiffe://<trust-domain>{AGENT_PATH}<environment-id>, or send `authorization: Bearer <token>`"
        ))),
        1 => Ok(Principal {
            token_id: fingerprint(der),
            role: Role::Agent,
            environment_id: environments.pop(),
        }),
        _ => Err(Status::unauthenticated(
            "the client certificate names agents of more than one environment; issue one certificate per environment",
        )),
    }
}

/// Returns the agent SPIFFE ID a client certificate names, for the audit
/// trail; `None` when it names none (or several).
pub(crate) fn spiffe_id(der: &[u8]) -> Option<String> {
    let cert = Certificate::from_der(der).ok()?;
    let san = cert
        .tbs_certificate()
        .get_extension::<SubjectAltName>()
        .ok()??;
    let mut ids = san.1 .0.iter().filter_map(|name| match name {
        GeneralName::UniformResourceIdentifier(uri)
            if agent_environment(uri.as_str()).is_some() =>
        {
            Some(uri.as_str().to_owned())
        }
        _ => None,
    });
    let first = ids.next()?;
    ids.next().is_none().then_some(first)
}

/// Returns the environment of an agent SPIFFE ID, or `None` for any other URI.
pub(crate) fn agent_environment(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (trust_domain, path) = rest.split_at(rest.find('/')?);
    let env = path.strip_prefix(AGENT_PATH)?;
    let valid_domain = !trust_domain.is_empty()
        && trust_domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b));
    let valid_env = !env.is_empty()
        && env.len() <= 128
        && env
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
    (valid_domain && valid_env).then_some(env)
}

/// Returns the actor id of a certificate: `cert:` and the first 16 hex digits
/// of its SHA-256, so the log says which certificate acted and watch limits
/// count per certificate.
fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("cert:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["agent".to_owned()]).unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::Ia5String::try_from(*uri).unwrap(),
            ));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn an_agent_spiffe_id_names_its_environment() {
        assert_eq!(
            agent_environment("spiffe://example.org/registrar/agent/1a2b"),
            Some("1a2b")
        );
        for other in [
            "https://example.org/registrar/agent/1a2b",
            "spiffe:///registrar/agent/1a2b",
            "spiffe://example.org/registrar/agent/",
            "spiffe://example.org/registrar/agent/a/b",
            "spiffe://example.org/registrar/member/a",
            "spiffe://Example.org/registrar/agent/a",
            "spiffe://example.org",
            "spiffe://example.org/registrar/agent/a?x=1",
        ] {
            assert_eq!(agent_environment(other), None, "{other}");
        }
    }

    #[test]
    fn a_certificate_with_one_agent_id_is_an_agent_of_that_environment() {
        let der = cert_with_uris(&[
            "https://example.org/other",
            "spiffe://example.org/registrar/agent/env1",
        ]);
        let p = principal(&der).unwrap();
        assert_eq!(p.role, Role::Agent);
        assert_eq!(p.environment_id.as_deref(), Some("env1"));
        assert!(p.token_id.starts_with("cert:") && p.token_id.len() == 21);
    }

    #[test]
    fn a_certificate_naming_no_agent_or_two_environments_is_refused() {
        let none = principal(&cert_with_uris(&["spiffe://example.org/web"])).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
        assert!(none.message().contains("URI SAN"), "{}", none.message());
        let two = principal(&cert_with_uris(&[
            "spiffe://example.org/registrar/agent/a",
            "spiffe://example.org/registrar/agent/b",
        ]))
        .unwrap_err();
        assert_eq!(two.code(), tonic::Code::Unauthenticated);
        let garbage = principal(b"not a certificate").unwrap_err();
        assert_eq!(garbage.code(), tonic::Code::Unauthenticated);
    }
}
