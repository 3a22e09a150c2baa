//! TLS for the server (rustls through tonic): the certificate, the key and
//! the CA of agents' client certificates; and the refusal to serve
//! plaintext on a non-loopback address unless told to.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::settings::{limits, Limits};
use super::Error;
use crate::config::ServeConfig;

/// Returns the transport settings of a configuration: its limits and its
/// TLS settings. A non-loopback address without TLS is refused unless
/// plaintext is allowed explicitly.
pub fn transport(config: &ServeConfig, listen: SocketAddr) -> Result<Limits, Error> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| Error::Tls {
            path: path.clone(),
            source,
        })
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
            let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
            if let Some(path) = &config.tls_client_ca {
                let pem = read(path)?;
                if !pem
                    .windows(CERTIFICATE_PEM.len())
                    .any(|w| w == CERTIFICATE_PEM)
                {
                    return Err(Error::ClientCa { path: path.clone() });
                }
                tls = tls
                    .client_ca_root(tonic::transport::Certificate::from_pem(pem))
                    .client_auth_optional(!config.tls_require_client_cert);
            }
            Some(tls)
        }
        _ => None,
    };
    if tls.is_none() && !listen.ip().is_loopback() && !config.allow_plaintext {
        return Err(Error::Plaintext(listen));
    }
    Ok(Limits {
        tls,
        ..limits(config)
    })
}

/// The first line of a PEM certificate.
const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";
