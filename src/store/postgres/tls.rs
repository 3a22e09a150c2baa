//! TLS to the database, with libpq's `sslmode` semantics over rustls:
//!
//! | sslmode | TLS | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (the default) | when the server offers it | no, unless `--database-ca` is given |
//! | `require` | always | no, unless `--database-ca` is given |
//! | `verify-ca` | always | chain to the CA (`--database-ca`, else the system's roots) |
//! | `verify-full` | always | chain and the host name |
//!
//! tokio-postgres parses only `disable`, `prefer` and `require`, so the
//! mode (and libpq's `sslrootcert`, an alternative to `--database-ca`) is
//! taken out of the URL here before tokio-postgres reads the rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};

use crate::crypto::Unchecked;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Error, Result};

/// How the certificate of the database server is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verify {
    /// Not at all (libpq's `prefer` and `require` without a root CA).
    Nothing,
    /// The chain, not the host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// The connection settings of a database URL and its TLS connector.
pub(super) struct Connection {
    /// tokio-postgres's settings, with `ssl_mode` set.
    pub(super) config: tokio_postgres::Config,
    /// The connector every connection uses (also when TLS is off).
    pub(super) tls: MakeRustlsConnect,
}

/// Parses `url` (libpq's URL or key=value form) with its `sslmode` and
/// `sslrootcert`; `ca` is `--database-ca`, which wins over `sslrootcert`.
pub(super) fn connection(url: &str, ca: Option<&Path>) -> Result<Connection> {
    let (rest, mode, rootcert) = take_tls_params(url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|_| {
        Error::storage("the database URL is not valid: give postgres://USER@HOST:PORT/DB")
    })?;
    let ca = ca.map(Path::to_path_buf).or(rootcert);
    let (ssl_mode, verify) = match mode.as_deref().unwrap_or("prefer") {
        "disable" => (SslMode::Disable, Verify::Nothing),
        "allow" | "prefer" if ca.is_some() => (SslMode::Prefer, Verify::Chain),
        "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
        "require" if ca.is_some() => (SslMode::Require, Verify::Chain),
        "require" => (SslMode::Require, Verify::Nothing),
        "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::Full),
        other => {
            return Err(Error::storage(format!(
                "the database URL's sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            )))
        }
    };
    config.ssl_mode(ssl_mode);
    let tls = MakeRustlsConnect::new(client_config(verify, ca.as_deref())?);
    Ok(Connection { config, tls })
}

/// Removes `sslmode` and `sslrootcert` from a URL's query or a key=value
/// string, returning the rest and their values.
fn take_tls_params(url: &str) -> Result<(String, Option<String>, Option<PathBuf>)> {
    let mut mode = None;
    let mut rootcert = None;
    let mut take = |key: &str, value: &str| match key {
        "sslmode" => {
            mode = Some(value.to_owned());
            true
        }
        "sslrootcert" => {
            rootcert = Some(PathBuf::from(value));
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        let v = percent_decode(v);
                        !take(k, &v)
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        url.split_whitespace()
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k.trim(), v.trim_matches('\''))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Ok((rest, mode, rootcert))
}

/// Decodes `%XX` escapes (a path in `sslrootcert` may hold them).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn client_config(verify: Verify, ca: Option<&Path>) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::storage(format!("TLS to the database: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(Unchecked::new(provider)),
        Verify::Chain | Verify::Full => {
            let roots = roots(ca)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::storage(format!("TLS to the database: {e}")))?;
            if verify == Verify::Full {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The roots that sign the database's certificate: the CA file, or the
/// system's roots.
fn roots(ca: Option<&Path>) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Error::storage(format!("--database-ca {}: {e}", path.display())))?;
            let mut found = 0;
            for cert in rustls_pemfile_certs(&pem) {
                roots.add(cert).map_err(|e| {
                    Error::storage(format!("--database-ca {}: {e}", path.display()))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(Error::storage(format!(
                    "--database-ca {}: no PEM CERTIFICATE block",
                    path.display()
                )));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // One unreadable system root does not stop the others.
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(std::result::Result::ok)
        .collect()
}

/// Checks the chain but not the name (`verify-ca`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_and_the_rest_stays() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u@h:5/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root, Some(PathBuf::from("/etc/ca.pem")));
        let (rest, mode, _) = take_tls_params("host=h user=u sslmode=require").unwrap();
        assert_eq!(rest, "host=h user=u");
        assert_eq!(mode.as_deref(), Some("require"));
        let (rest, mode, _) = take_tls_params("postgres://u@h/db").unwrap();
        assert_eq!((rest.as_str(), mode), ("postgres://u@h/db", None));
    }

    #[test]
    fn an_unknown_sslmode_is_refused_by_name() {
        let Err(e) = connection("postgres://u@h/db?sslmode=sometimes", None) else {
            panic!("accepted");
        };
        assert!(e.to_string().contains("\"sometimes\""), "{e}");
    }
}
