//! Transport: TLS with rustls, and the guard that refuses plaintext on a
//! non-loopback address unless it is allowed explicitly.

mod common;

use std::net::SocketAddr;

use common::TestServer;
use registrar::config::ServeConfig;
use registrar::pb;
use registrar::server::{transport, Error};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[test]
fn plaintext_on_a_non_loopback_address_needs_an_explicit_flag() {
    let mut config = ServeConfig::for_dir("/nonexistent".into());
    let public: SocketAddr = "0.0.0.0:50051".parse().unwrap();
    let err = transport(&config, public).unwrap_err();
    assert!(matches!(err, Error::Plaintext(_)), "{err}");
    assert!(err.to_string().contains("--allow-plaintext"), "{err}");
    assert!(transport(&config, "127.0.0.1:50051".parse().unwrap()).is_ok());
    assert!(transport(&config, "[::1]:50051".parse().unwrap()).is_ok());
    config.allow_plaintext = true;
    assert!(transport(&config, public).is_ok());
}

#[tokio::test]
async fn the_server_speaks_tls_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let server = TestServer::start_with(move |config| {
        config.tls_cert = Some(c.clone());
        config.tls_key = Some(k.clone());
    })
    .await;
    let port = server.running.as_ref().unwrap().addr.port();

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(cert.cert.pem()))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS client connects");
    let mut c = common::Clients::over(channel, common::Bearer::new(Some(&server.admin)));
    c.env
        .list_environments(pb::ListEnvironmentsRequest::default())
        .await
        .expect("served over TLS");

    // A plaintext client gets no answer from a TLS port.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        let mut p = common::Clients::over(plain, common::Bearer::new(Some(&server.admin)));
        assert!(p
            .env
            .list_environments(pb::ListEnvironmentsRequest::default())
            .await
            .is_err());
    }
}
