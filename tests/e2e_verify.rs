//! Credentials checked against Debian's docker-registry: HTTP Basic
//! (htpasswd) and token authentication with a token issuer started by the
//! test, each over TLS with a self-signed CA and over plain HTTP as an
//! insecure registry, with right and wrong passwords.
//! `cargo test --features e2e --test e2e_verify` (`.ci/run` installs the
//! programs); a missing program fails the test, naming it.

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::registry::{htpasswd, DockerRegistry};
use common::stub::{Answer, Asked, Stub};
use common::{assert_status, custom, test_pki, Fixture, TestServer};
use registrar::config::Interval;
use registrar::pb;
use tonic::Code;

const USER: &str = "alice";
const PASSWORD: &str = "Right-Pw-e2e-9";
const WRONG: &str = "Wrong-Pw-e2e-1";
const SERVICE: &str = "registrar-e2e";
const ISSUER: &str = "registrar-e2e-issuer";

async fn fixture() -> Fixture {
    let server = TestServer::start_with(|c| {
        c.verify_interval = Interval(std::time::Duration::ZERO);
        c.verify_timeout_secs = 10;
    })
    .await;
    Fixture::with_server(server, pb::Orchestration::Cattle).await
}

/// A registry's certificate for 127.0.0.1 and its CA, written to `dir`;
/// returns the CA's PEM.
fn tls_files(dir: &Path) -> (String, String, String) {
    let (ca, cert, key) = test_pki("registrar e2e registry CA", &["127.0.0.1"]);
    std::fs::write(dir.join("registry.crt"), &cert).unwrap();
    std::fs::write(dir.join("registry.key"), &key).unwrap();
    (ca, cert, key)
}

fn start(dir: &Path, tls: bool, auth: String) -> DockerRegistry {
    let (cert, key) = (dir.join("registry.crt"), dir.join("registry.key"));
    DockerRegistry::start(dir, tls.then_some((cert.as_path(), key.as_path())), &auth)
}

/// Creates the registry with `verify`; returns the result.
async fn create(
    f: &mut Fixture,
    address: &str,
    password: &str,
    ca: &str,
    insecure: bool,
) -> Result<pb::Registry, tonic::Status> {
    f.admin
        .reg
        .create_registry(pb::CreateRegistryRequest {
            ca_certificate_pem: ca.to_owned(),
            insecure,
            verify: true,
            ..custom(&f.env, address, USER, password)
        })
        .await
        .map(|r| r.into_inner().registry.unwrap())
}

/// Asserts the creation was refused with FAILED_PRECONDITION whose message
/// holds `expected`, without the password.
fn refused(r: Result<pb::Registry, tonic::Status>, expected: &str, password: &str) {
    let status = assert_status(r, Code::FailedPrecondition, None);
    assert!(
        status.message().contains(expected),
        "expected {expected:?} in {:?}",
        status.message()
    );
    assert!(!status.message().contains(password));
}

fn accepted(r: Result<pb::Registry, tonic::Status>, expected: &str) -> pb::Registry {
    let reg = r.unwrap_or_else(|s| panic!("refused: {s:?}"));
    let v = reg.last_verification.clone().expect("a verification");
    assert!(v.ok, "{v:?}");
    assert_eq!(v.message, expected);
    reg
}

/// Checks the registry's stored credential now; returns the result.
async fn verify_now(f: &mut Fixture, id: &str) -> pb::Verification {
    f.admin
        .reg
        .verify_registry(pb::VerifyRegistryRequest {
            id: id.to_owned(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .registry
        .unwrap()
        .last_verification
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registries_over_tls_and_plain_http() {
    let tls_dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = tls_files(tls_dir.path());
    let auth = htpasswd(tls_dir.path(), USER, PASSWORD);
    let secure = start(tls_dir.path(), true, auth);
    let plain_dir = tempfile::tempdir().unwrap();
    let auth = htpasswd(plain_dir.path(), USER, PASSWORD);
    let plain = start(plain_dir.path(), false, auth);
    let mut f = fixture().await;
    let basic = "the registry accepted the credential (Basic)";

    let addr = &secure.address;
    refused(
        create(&mut f, addr, WRONG, &ca, false).await,
        &format!("the registry rejected the credential: 401 from https://{addr}/v2/"),
        WRONG,
    );
    // Without its CA the registry's certificate is not trusted: a failure
    // to reach it, not a rejection.
    refused(
        create(&mut f, addr, PASSWORD, "", false).await,
        &format!("cannot reach https://{addr}/v2/"),
        PASSWORD,
    );
    let status = create(&mut f, addr, PASSWORD, "", false).await.unwrap_err();
    assert!(
        status.message().contains("certificate") && !status.message().contains("rejected"),
        "{}",
        status.message()
    );
    assert!(f.admin.list(&f.env).await.is_empty(), "nothing recorded");
    let reg = accepted(create(&mut f, addr, PASSWORD, &ca, false).await, basic);

    // On demand, with the stored credential; then the password is changed
    // at the registry and the same check reports it.
    assert!(verify_now(&mut f, &reg.id).await.ok);
    htpasswd(tls_dir.path(), USER, "Changed-Pw-e2e-2");
    // docker-registry rereads its htpasswd file when it changes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let v = loop {
        let v = verify_now(&mut f, &reg.id).await;
        if !v.ok || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert!(!v.ok, "the changed password is noticed: {v:?}");
    assert_eq!(
        v.message,
        format!("the registry rejected the credential: 401 from https://{addr}/v2/")
    );

    // An insecure registry skips the certificate check.
    f.admin
        .reg
        .delete_registry(pb::DeleteRegistryRequest {
            id: reg.id.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    accepted(
        create(&mut f, addr, "Changed-Pw-e2e-2", "", true).await,
        basic,
    );

    // Plain HTTP: only for an insecure registry, where TLS is tried first.
    let addr = &plain.address;
    refused(
        create(&mut f, addr, PASSWORD, "", false).await,
        &format!("cannot reach https://{addr}/v2/"),
        PASSWORD,
    );
    refused(
        create(&mut f, addr, WRONG, "", true).await,
        &format!("the registry rejected the credential: 401 from http://{addr}/v2/"),
        WRONG,
    );
    accepted(create(&mut f, addr, PASSWORD, "", true).await, basic);
}

/// A token issuer as docker-registry's token authentication expects: it
/// checks the Basic credential and signs an ES256 JWT whose `x5c` holds
/// its certificate, which the registry trusts through `rootcertbundle`.
struct Issuer {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl Issuer {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "registrar e2e token signer");
        let cert = params.self_signed(&key).unwrap();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        Self {
            key: signer,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
        }
    }

    fn token(&self, subject: &str) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{subject}"),
            "access": [],
        });
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64(signature.as_ref()))
    }

    /// The token endpoint: a token for USER with PASSWORD, 401 otherwise.
    fn answer(&self, asked: &Asked) -> Answer {
        let (path, query) = asked
            .path_and_query
            .split_once('?')
            .unwrap_or((&asked.path_and_query, ""));
        if path != "/token" {
            return Answer::status(404);
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let has = |k: &str, v: &str| pairs.iter().any(|(a, b)| a == k && b == v);
        if !has("service", SERVICE) || !has("account", USER) {
            return Answer::status(400).body(format!("unexpected query {query}"));
        }
        let pair = format!("{USER}:{PASSWORD}");
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        );
        if asked.authorization.as_deref() != Some(expected.as_str()) {
            return Answer::status(401).body(r#"{"details":"bad credentials"}"#);
        }
        Answer::status(200)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "token": self.token(USER), "expires_in": 300 }).to_string())
    }
}

fn token_auth(dir: &Path, realm: &str, issuer: &Issuer) -> String {
    let bundle = dir.join("token-signer.pem");
    std::fs::write(&bundle, &issuer.cert_pem).unwrap();
    format!(
        "  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    \
         rootcertbundle: {}\n",
        bundle.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_authentication_over_tls_and_plain_http() {
    let issuer = std::sync::Arc::new(Issuer::new());
    let tls_dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(tls_dir.path());
    let answering = std::sync::Arc::clone(&issuer);
    let tokens = Stub::start(Some((&cert, &key)), move |a| answering.answer(a)).await;
    let realm = format!("https://{}/token", tokens.addr);
    let secure = start(
        tls_dir.path(),
        true,
        token_auth(tls_dir.path(), &realm, &issuer),
    );

    let plain_dir = tempfile::tempdir().unwrap();
    let answering = std::sync::Arc::clone(&issuer);
    let plain_tokens = Stub::start(None, move |a| answering.answer(a)).await;
    let plain_realm = format!("http://{}/token", plain_tokens.addr);
    let plain = start(
        plain_dir.path(),
        false,
        token_auth(plain_dir.path(), &plain_realm, &issuer),
    );
    let mut f = fixture().await;

    let addr = &secure.address;
    refused(
        create(&mut f, addr, WRONG, &ca, false).await,
        &format!("the registry rejected the credential: 401 from {realm}"),
        WRONG,
    );
    let reg = accepted(
        create(&mut f, addr, PASSWORD, &ca, false).await,
        &format!(
            "the registry accepted the credential (a token from {})",
            tokens.addr
        ),
    );
    assert!(tokens.hits() >= 2);
    // The token the check fetched was the registry's to judge: a token
    // signed by another key is refused by it.
    let stranger = Issuer::new();
    let forged = stranger.token(USER);
    let answer = get_with_token(addr, &ca, &forged).await;
    assert_eq!(answer, 401, "docker-registry checks the token's signature");

    assert!(verify_now(&mut f, &reg.id).await.ok);

    // Plain HTTP and an http realm: only for an insecure registry.
    let addr = &plain.address;
    refused(
        create(&mut f, addr, PASSWORD, "", false).await,
        &format!("cannot reach https://{addr}/v2/"),
        PASSWORD,
    );
    assert_eq!(plain_tokens.hits(), 0);
    refused(
        create(&mut f, addr, WRONG, "", true).await,
        &format!("the registry rejected the credential: 401 from {plain_realm}"),
        WRONG,
    );
    accepted(
        create(&mut f, addr, PASSWORD, "", true).await,
        &format!(
            "the registry accepted the credential (a token from {})",
            plain_tokens.addr
        ),
    );
}

/// GET /v2/ at the TLS registry with a Bearer token; returns the status.
async fn get_with_token(address: &str, ca: &str, token: &str) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"))
}
