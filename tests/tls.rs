//! Transport: TLS with rustls, agents authenticated by client certificate,
//! and the guard that refuses plaintext on a non-loopback address unless it
//! is allowed explicitly.

mod common;

use std::net::SocketAddr;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{assert_status, Clients, TestServer};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, Ia5String, IsCa, KeyPair,
    SanType,
};
use registrar::config::ServeConfig;
use registrar::pb;
use registrar::server::{transport, Error};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

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

// ---- client certificates

/// A test CA and the files of a server certificate it signed.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
struct Pem {
    cert: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca,
            ca_key,
        }
    }

    /// Issues a certificate with DNS names, URI SANs and one extended key usage.
    fn issue(&self, dns: &[&str], uris: &[&str], usage: ExtendedKeyUsagePurpose) -> Pem {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        params.subject_alt_names.extend(
            uris.iter()
                .map(|u| SanType::URI(Ia5String::try_from(*u).unwrap())),
        );
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn agent(&self, env: &str) -> Pem {
        self.issue(
            &[],
            &[&format!("spiffe://example.org/registrar/agent/{env}")],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// Writes `contents` to a file of the PKI's directory.
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// Starts a TLS server whose client CA is `pki`'s.
async fn mtls_server(pki: &Pki, require: bool) -> TestServer {
    let server = pki.issue(&["localhost"], &[], ExtendedKeyUsagePurpose::ServerAuth);
    let cert = pki.file("server.crt", &server.cert);
    let key = pki.file("server.key", &server.key);
    let ca = pki.file("ca.crt", &pki.ca.pem());
    TestServer::start_with(move |config| {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
        config.tls_client_ca = Some(ca.clone());
        config.tls_require_client_cert = require;
    })
    .await
}

fn port(server: &TestServer) -> u16 {
    server.running.as_ref().unwrap().addr.port()
}

/// Clients over TLS trusting `pki`'s CA, presenting `identity` and `token`.
async fn tls_clients(
    server: &TestServer,
    pki: &Pki,
    identity: Option<&Pem>,
    token: Option<&str>,
) -> Clients {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pki.ca.pem()))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    // The handshake of a refused certificate may fail at connect or at the
    // first call (TLS 1.3 sends the client's certificate last): connect
    // lazily so both show up as a failed call.
    let channel = Channel::from_shared(format!("https://localhost:{}", port(server)))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    Clients::over(channel, common::Bearer::new(token))
}

/// An admin over TLS sets up environment `name` with one registry.
async fn env_with_registry(
    admin: &mut Clients,
    name: &str,
    orchestration: pb::Orchestration,
    password: &str,
) -> String {
    let env = admin.create_env(name, orchestration).await;
    admin
        .reg
        .create_registry(common::custom(&env, "reg.example.com:5000", name, password))
        .await
        .expect("create registry");
    env
}

fn username(r: &pb::ResolvePullResponse) -> String {
    common::allowed(r)
        .credential
        .as_ref()
        .expect("a credential")
        .username
        .clone()
}

#[tokio::test]
async fn an_agent_certificate_acts_as_an_agent_of_its_environment_only() {
    let pki = Pki::new("registrar test CA");
    let server = mtls_server(&pki, false).await;
    // Without a certificate, tokens work as before (client auth is optional).
    let mut admin = tls_clients(&server, &pki, None, Some(&server.admin)).await;
    let a = env_with_registry(&mut admin, "alpha", pb::Orchestration::Cattle, "pw-a").await;
    let b = env_with_registry(&mut admin, "beta", pb::Orchestration::Cattle, "pw-b").await;
    let image = "reg.example.com:5000/team/app:1";

    let mut agent = tls_clients(&server, &pki, Some(&pki.agent(&a)), None).await;
    let r = agent
        .resolve("", image)
        .await
        .expect("resolve as agent of A");
    assert_eq!(username(&r), "alpha");
    let r = agent.resolve(&a, image).await.expect("resolve in A");
    assert_eq!(username(&r), "alpha");
    assert_status(agent.resolve(&b, image).await, Code::NotFound, None);
    let changed = agent
        .reg
        .create_registry(common::custom(&a, "other.example.com", "x", "y"))
        .await;
    assert_status(changed, Code::PermissionDenied, None);
    let tokens = agent
        .tokens
        .list_tokens(pb::ListTokensRequest::default())
        .await;
    assert_status(tokens, Code::PermissionDenied, None);
    let mut stream = agent
        .pull
        .watch(pb::WatchRequest {
            min_revision: 0,
            environment_id: String::new(),
            resume_token: String::new(),
            send_initial_state: true,
        })
        .await
        .expect("watch as agent of A")
        .into_inner();
    let first = stream.message().await.unwrap().expect("a first event");
    let Some(pb::watch_response::Event::RegistryChanged(changed)) = first.event else {
        panic!("the initial state first: {first:?}")
    };
    assert_eq!(
        (changed.environment_id.as_str(), changed.address.as_str()),
        (a.as_str(), "reg.example.com:5000")
    );

    // A sent token decides, whatever the certificate says.
    let token_b = admin.token(pb::Role::Agent, &b).await;
    let mut both = tls_clients(&server, &pki, Some(&pki.agent(&a)), Some(&token_b)).await;
    let r = both
        .resolve("", image)
        .await
        .expect("resolve with B's token");
    assert_eq!(username(&r), "beta");
    let mut bad_token = tls_clients(&server, &pki, Some(&pki.agent(&a)), Some("rgr.x.y")).await;
    assert_status(
        bad_token.resolve("", image).await,
        Code::Unauthenticated,
        None,
    );

    // A verified certificate that names no agent authenticates no one.
    let web = pki.issue(
        &[],
        &["spiffe://example.org/web"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let mut nobody = tls_clients(&server, &pki, Some(&web), None).await;
    let status = assert_status(nobody.resolve("", image).await, Code::Unauthenticated, None);
    assert!(status.message().contains("URI SAN"), "{status:?}");
    let mut web_admin = tls_clients(&server, &pki, Some(&web), Some(&server.admin)).await;
    web_admin
        .env
        .list_environments(pb::ListEnvironmentsRequest::default())
        .await
        .expect("the token decides");

    // A certificate of another CA, even naming an agent, gets no answer.
    let other = Pki::new("another CA");
    let mut forged = tls_clients(&server, &pki, Some(&other.agent(&a)), None).await;
    let refused = forged.resolve("", image).await;
    assert!(refused.is_err(), "{refused:?}");

    // The server kept serving through all of it.
    agent.resolve("", image).await.expect("still serving");
}

#[tokio::test]
async fn a_required_client_certificate_refuses_connections_without_one() {
    let pki = Pki::new("registrar test CA");
    let server = mtls_server(&pki, true).await;
    let mut bare = tls_clients(&server, &pki, None, Some(&server.admin)).await;
    let refused = bare
        .env
        .list_environments(pb::ListEnvironmentsRequest::default())
        .await;
    assert!(refused.is_err(), "{refused:?}");

    let ops = pki.issue(&[], &[], ExtendedKeyUsagePurpose::ClientAuth);
    let mut admin = tls_clients(&server, &pki, Some(&ops), Some(&server.admin)).await;
    admin
        .env
        .list_environments(pb::ListEnvironmentsRequest::default())
        .await
        .expect("certificate and token");
}

#[test]
fn a_client_ca_file_without_a_certificate_is_refused_at_start() {
    let pki = Pki::new("registrar test CA");
    let mut config = ServeConfig::for_dir("/nonexistent".into());
    let server = pki.issue(&["localhost"], &[], ExtendedKeyUsagePurpose::ServerAuth);
    config.tls_cert = Some(pki.file("server.crt", &server.cert));
    config.tls_key = Some(pki.file("server.key", &server.key));
    config.tls_client_ca = Some(pki.file("ca.key", &server.key));
    let err = transport(&config, "127.0.0.1:50051".parse().unwrap()).unwrap_err();
    assert!(matches!(err, Error::ClientCa { .. }), "{err}");
    assert!(err.to_string().contains("ca.key"), "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY-----\n"), "{err}");
    config.tls_client_ca = Some(pki.file("ca.crt", &pki.ca.pem()));
    assert!(transport(&config, "127.0.0.1:50051".parse().unwrap()).is_ok());
}

/// Runs a client program with the TLS files in its environment and no token.
fn run_with_certificate(
    program: &str,
    args: &[&str],
    server: &TestServer,
    pki: &Pki,
    agent: &Pem,
    stdin: &str,
) -> std::process::Output {
    let mut cmd = Command::new(program);
    for var in [
        "REGISTRAR_TOKEN",
        "REGISTRAR_TOKEN_FILE",
        "REGISTRAR_DATA_DIR",
    ] {
        cmd.env_remove(var);
    }
    let tag = agent.cert.len();
    cmd.args(args)
        .env(
            "REGISTRAR_SERVER",
            format!("https://localhost:{}", port(server)),
        )
        .env("REGISTRAR_SERVER_CA", pki.file("ca.crt", &pki.ca.pem()))
        .env(
            "REGISTRAR_CLIENT_CERT",
            pki.file(&format!("agent-{tag}.crt"), &agent.cert),
        )
        .env(
            "REGISTRAR_CLIENT_KEY",
            pki.file(&format!("agent-{tag}.key"), &agent.key),
        )
        .current_dir(pki.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the program starts");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("the program ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_provider_and_the_credential_helper_present_a_certificate() {
    let pki = Pki::new("registrar test CA");
    let server = mtls_server(&pki, false).await;
    let mut admin = tls_clients(&server, &pki, None, Some(&server.admin)).await;
    let kube = env_with_registry(&mut admin, "kube", pb::Orchestration::Kubernetes, "pw-k").await;
    let cattle = env_with_registry(&mut admin, "cattle", pb::Orchestration::Cattle, "pw-c").await;

    let request = serde_json::json!({
        "kind": "CredentialProviderRequest",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "image": "reg.example.com:5000/team/app:1",
    })
    .to_string();
    let (kube_agent, cattle_agent) = (pki.agent(&kube), pki.agent(&cattle));
    let out = {
        let (server, pki) = (&server, &pki);
        tokio::task::block_in_place(|| {
            run_with_certificate(
                env!("CARGO_BIN_EXE_registrar"),
                &["kubelet-credential-provider"],
                server,
                pki,
                &kube_agent,
                &request,
            )
        })
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["auth"]["reg.example.com:5000"]["username"], "kube");
    assert_eq!(v["auth"]["reg.example.com:5000"]["password"], "pw-k");

    let out = tokio::task::block_in_place(|| {
        run_with_certificate(
            env!("CARGO_BIN_EXE_docker-credential-registrar"),
            &["get"],
            &server,
            &pki,
            &cattle_agent,
            "reg.example.com:5000",
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["Username"].as_str(), v["Secret"].as_str()),
        (Some("cattle"), Some("pw-c"))
    );
}
