//! The clients as programs: the CLI, the docker credential helper and the
//! kubelet credential provider, run as built binaries against a real server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{custom, TestServer};
use registrar::pb;

const CLI: &str = env!("CARGO_BIN_EXE_registrar");
const HELPER: &str = env!("CARGO_BIN_EXE_docker-credential-registrar");
const NOT_FOUND: &str = "credentials not found in native keychain";

/// What a program printed and how it exited.
#[derive(Debug)]
struct Ran {
    stdout: String,
    stderr: String,
    code: i32,
}

impl Ran {
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// A program to run with a clean environment: no REGISTRAR_* variable of
/// the caller's leaks in, and the working directory has no registrar-data.
struct Prog {
    cmd: Command,
    stdin: String,
    _cwd: tempfile::TempDir,
}

impl Prog {
    fn new(bin: &str) -> Self {
        let cwd = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(bin);
        for var in [
            "REGISTRAR_SERVER",
            "REGISTRAR_TOKEN",
            "REGISTRAR_TOKEN_FILE",
            "REGISTRAR_DATA_DIR",
            "REGISTRAR_SERVER_CA",
            "REGISTRAR_CLIENT_CERT",
            "REGISTRAR_CLIENT_KEY",
        ] {
            cmd.env_remove(var);
        }
        cmd.current_dir(cwd.path());
        Self {
            cmd,
            stdin: String::new(),
            _cwd: cwd,
        }
    }

    fn args(mut self, args: &[&str]) -> Self {
        self.cmd.args(args);
        self
    }

    fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    fn stdin(mut self, text: &str) -> Self {
        self.stdin = text.to_owned();
        self
    }

    /// Runs the program off the async runtime, so the server keeps serving.
    async fn run(mut self) -> Ran {
        tokio::task::spawn_blocking(move || {
            let mut child = self
                .cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the program starts");
            let mut stdin = child.stdin.take().expect("stdin");
            let text = std::mem::take(&mut self.stdin);
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(text.as_bytes());
            });
            let out = child.wait_with_output().expect("the program ends");
            let _ = writer.join();
            Ran {
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                code: out.status.code().unwrap_or(-1),
            }
        })
        .await
        .expect("the runner thread")
    }
}

/// The CLI with the server and a token in the environment, as a person sets them.
fn cli(server: &TestServer, token: &str) -> Prog {
    Prog::new(CLI)
        .env("REGISTRAR_SERVER", server.url())
        .env("REGISTRAR_TOKEN", token)
}

/// The credential helper as docker runs it, with an agent token.
fn helper(server: &TestServer, token: &str, action: &str) -> Prog {
    Prog::new(HELPER)
        .args(&[action])
        .env("REGISTRAR_SERVER", server.url())
        .env("REGISTRAR_TOKEN", token)
}

async fn new_env(server: &TestServer, orchestration: &str) -> String {
    let ran = cli(server, &server.admin)
        .args(&[
            "env",
            "create",
            "e",
            "--orchestration",
            orchestration,
            "--json",
        ])
        .run()
        .await
        .ok();
    ran.json()["id"].as_str().unwrap().to_owned()
}

async fn add_registry(server: &TestServer, env: &str, address: &str, password: &str) -> String {
    let ran = cli(server, &server.admin)
        .args(&[
            "registry",
            "add",
            "--env",
            env,
            "--address",
            address,
            "--email",
            "ops@example.com",
            "--username",
            "alice",
            "--password-stdin",
            "--json",
        ])
        .stdin(&format!("{password}\n"))
        .run()
        .await
        .ok();
    ran.json()["id"].as_str().unwrap().to_owned()
}

async fn agent_token(server: &TestServer, env: &str) -> String {
    let ran = cli(server, &server.admin)
        .args(&["token", "create", "--role", "agent", "--env", env])
        .run()
        .await
        .ok();
    assert!(ran.stderr.contains("shown once"), "{ran:?}");
    ran.stdout.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_manage_environments_and_registries_with_the_cli() {
    let server = TestServer::start().await;
    let env = new_env(&server, "cattle").await;

    let listed = cli(&server, &server.admin)
        .args(&["env", "list"])
        .run()
        .await
        .ok();
    let header = listed.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("ORCHESTRATION"),
        "{listed:?}"
    );
    assert!(listed.stdout.contains(&env) && listed.stdout.contains("cattle"));

    let reg = add_registry(&server, &env, "reg.example.com:5000", "s3cret").await;
    let table = cli(&server, &server.admin)
        .args(&["registry", "list", "--env", &env])
        .run()
        .await
        .ok();
    assert!(table.stdout.contains("reg.example.com:5000"), "{table:?}");
    assert!(table.stdout.contains("active"));
    assert!(!table.stdout.contains("s3cret"), "no read shows a password");

    // An edit needs the password again and changes the credential.
    let edited = cli(&server, &server.admin)
        .args(&[
            "registry",
            "edit",
            &reg,
            "--username",
            "carol",
            "--password-stdin",
            "--json",
        ])
        .stdin("n3w\n")
        .run()
        .await
        .ok();
    assert_eq!(edited.json()["username"], "carol");
    let shown = cli(&server, &server.admin)
        .args(&["registry", "show", &reg, "--json"])
        .run()
        .await
        .ok();
    assert_eq!(shown.json()["state"], "REGISTRY_STATE_ACTIVE");

    let resolved = cli(&server, &server.admin)
        .args(&[
            "resolve",
            "reg.example.com:5000/team/app:1",
            "--env",
            &env,
            "--json",
        ])
        .run()
        .await
        .ok();
    let v = resolved.json();
    assert_eq!(v["allowed"]["credential"]["username"], "carol");
    assert_eq!(v["allowed"]["credential"]["password"], "n3w");
    let table = cli(&server, &server.admin)
        .args(&["resolve", "reg.example.com:5000/team/app:1", "--env", &env])
        .run()
        .await
        .ok();
    assert!(
        table.stdout.contains("allowed") && !table.stdout.contains("n3w"),
        "{table:?}"
    );

    // Deactivated: the pull is denied, and the exit code says so.
    cli(&server, &server.admin)
        .args(&["registry", "deactivate", &reg])
        .run()
        .await
        .ok();
    let denied = cli(&server, &server.admin)
        .args(&["resolve", "reg.example.com:5000/team/app:1", "--env", &env])
        .run()
        .await;
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(
        denied.stdout.contains("DENY_REASON_REGISTRY_INACTIVE"),
        "{denied:?}"
    );
    assert!(denied.stderr.contains("pull denied"), "{denied:?}");
    let again = cli(&server, &server.admin)
        .args(&["registry", "deactivate", &reg])
        .run()
        .await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("FAILED_PRECONDITION"), "{again:?}");
    cli(&server, &server.admin)
        .args(&["registry", "activate", &reg])
        .run()
        .await
        .ok();

    let removed = cli(&server, &server.admin)
        .args(&["registry", "rm", &reg])
        .run()
        .await
        .ok();
    assert!(removed.stdout.contains("deleted"), "{removed:?}");
    let empty = cli(&server, &server.admin)
        .args(&["registry", "list", "--env", &env, "--json"])
        .run()
        .await
        .ok();
    assert_eq!(empty.json(), serde_json::json!([]));
    cli(&server, &server.admin)
        .args(&["env", "rm", &env])
        .run()
        .await
        .ok();
    let gone = cli(&server, &server.admin)
        .args(&["env", "show", &env])
        .run()
        .await;
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("NOT_FOUND"), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_never_taken_from_the_command_line() {
    let server = TestServer::start().await;
    let env = new_env(&server, "cattle").await;
    let ran = cli(&server, &server.admin)
        .args(&[
            "registry",
            "add",
            "--env",
            &env,
            "--address",
            "r:1",
            "--email",
            "e@x",
            "--username",
            "u",
            "--password",
            "s3cret",
        ])
        .run()
        .await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr.contains("unexpected argument '--password'"),
        "{ran:?}"
    );
    assert!(!ran.stderr.contains("s3cret"), "the secret is not echoed");
    assert!(!ran.stdout.contains("s3cret"), "the secret is not echoed");
    // Without a terminal and without --password-stdin it says how to give one.
    let ran = cli(&server, &server.admin)
        .args(&[
            "registry",
            "add",
            "--env",
            &env,
            "--address",
            "r:1",
            "--email",
            "e@x",
            "--username",
            "u",
        ])
        .run()
        .await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("--password-stdin"), "{ran:?}");
    // A password file works (GCR keys are files).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-a-file\n").unwrap();
    cli(&server, &server.admin)
        .args(&[
            "registry",
            "add",
            "--env",
            &env,
            "--address",
            "r:1",
            "--email",
            "e@x",
            "--username",
            "u",
        ])
        .args(&["--password-file", file.to_str().unwrap()])
        .run()
        .await
        .ok();
    let mut admin = server.admin().await;
    let r = admin.resolve(&env, "r:1/x").await.unwrap();
    assert_eq!(
        common::allowed(&r).credential.as_ref().unwrap().password,
        "from-a-file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_refusal_usage_and_an_unreachable_server_apart() {
    let server = TestServer::start().await;
    let refused = cli(&server, "rgr.nobody.nothing")
        .args(&["env", "list"])
        .run()
        .await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("UNAUTHENTICATED"), "{refused:?}");
    assert!(
        !refused.stderr.contains("rgr.nobody.nothing"),
        "errors never print a token"
    );

    let no_token = Prog::new(CLI)
        .env("REGISTRAR_SERVER", server.url())
        .args(&["env", "list"])
        .run()
        .await;
    assert_eq!(no_token.code, 1);
    assert!(no_token.stderr.contains("REGISTRAR_TOKEN"), "{no_token:?}");

    let usage = cli(&server, &server.admin)
        .args(&["env", "create"])
        .run()
        .await;
    assert_eq!(usage.code, 2, "{usage:?}");
    let usage = cli(&server, &server.admin)
        .args(&["settings", "set"])
        .run()
        .await;
    assert_eq!(usage.code, 2, "{usage:?}");

    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let unreachable = Prog::new(CLI)
        .args(&[
            "env",
            "list",
            "--server",
            &format!("127.0.0.1:{port}"),
            "--token",
            "t",
        ])
        .run()
        .await;
    assert_eq!(unreachable.code, 3, "{unreachable:?}");
    assert!(
        unreachable.stderr.contains("cannot connect"),
        "{unreachable:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_server_s_machine_the_cli_finds_the_admin_token_itself() {
    let server = TestServer::start().await;
    let ran = Prog::new(CLI)
        .env("REGISTRAR_SERVER", server.url())
        .env("REGISTRAR_DATA_DIR", server.data_dir())
        .args(&["token", "list", "--json"])
        .run()
        .await
        .ok();
    assert_eq!(ran.json()[0]["role"], "ROLE_ADMIN");

    // And in ./registrar-data, where `registrar serve` keeps it by default.
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("registrar-data");
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(
        server.data_dir().join("admin.token"),
        data.join("admin.token"),
    )
    .unwrap();
    let mut prog = Prog::new(CLI)
        .env("REGISTRAR_SERVER", server.url())
        .args(&["settings", "get"]);
    prog.cmd.current_dir(cwd.path());
    let ran = prog.run().await.ok();
    assert!(ran.stdout.contains("whitelist"), "{ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_take_the_rancher_comma_separated_whitelist() {
    let server = TestServer::start().await;
    let ran = cli(&server, &server.admin)
        .args(&[
            "settings",
            "set",
            "--whitelist",
            "reg:5000, index.docker.io,",
            "--json",
        ])
        .run()
        .await
        .ok();
    assert_eq!(
        ran.json(),
        serde_json::json!({"defaultRegistry": "", "whitelist": ["reg:5000", "index.docker.io"]})
    );
    // Only the named setting changes.
    let ran = cli(&server, &server.admin)
        .args(&[
            "settings",
            "set",
            "--default-registry",
            "reg:5000",
            "--json",
        ])
        .run()
        .await
        .ok();
    assert_eq!(
        ran.json()["whitelist"],
        serde_json::json!(["reg:5000", "index.docker.io"])
    );
    assert_eq!(ran.json()["defaultRegistry"], "reg:5000");
    let ran = cli(&server, &server.admin)
        .args(&["settings", "set", "--whitelist", ""])
        .run()
        .await
        .ok();
    assert!(ran.stdout.contains("every registry is allowed"), "{ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_issued_listed_and_revoked() {
    let server = TestServer::start().await;
    let env = new_env(&server, "kubernetes").await;
    let agent = agent_token(&server, &env).await;
    assert!(agent.starts_with("rgr."), "{agent}");
    let listed = cli(&server, &server.admin)
        .args(&["token", "list", "--json"])
        .run()
        .await
        .ok();
    let tokens = listed.json();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "ROLE_AGENT")
        .unwrap()["tokenId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!listed.stdout.contains(&agent), "secrets are shown once");
    cli(&server, &agent)
        .args(&["registry", "list"])
        .run()
        .await
        .ok();
    cli(&server, &server.admin)
        .args(&["token", "revoke", &id])
        .run()
        .await
        .ok();
    let refused = cli(&server, &agent).args(&["registry", "list"]).run().await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("UNAUTHENTICATED"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_config_writes_the_runtime_files_into_a_directory() {
    let server = TestServer::start().await;
    let env = new_env(&server, "cattle").await;
    let mut admin = server.admin().await;
    admin
        .add_registry(pb::CreateRegistryRequest {
            insecure: true,
            ..custom(&env, "plain.local:5000", "u", "p")
        })
        .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("etc-docker");
    let ran = cli(&server, &server.admin)
        .args(&["host-config", "--env", &env, "--format", "docker", "--dir"])
        .args(&[out.to_str().unwrap()])
        .run()
        .await
        .ok();
    assert!(ran.stdout.contains("daemon.json"), "{ran:?}");
    let daemon: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("daemon.json")).unwrap()).unwrap();
    assert_eq!(
        daemon["insecure-registries"],
        serde_json::json!(["plain.local:5000"])
    );

    let printed = cli(&server, &server.admin)
        .args(&["host-config", "--env", &env, "--format", "containerd"])
        .run()
        .await
        .ok();
    assert!(
        printed
            .stdout
            .contains("== certs.d/plain.local:5000/hosts.toml"),
        "{printed:?}"
    );
    assert!(printed.stdout.contains("skip_verify = true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_the_initial_state_then_each_change() {
    let server = TestServer::start().await;
    let env = new_env(&server, "cattle").await;
    let mut admin = server.admin().await;
    admin
        .add_registry(custom(&env, "first.example.com", "u", "p"))
        .await;
    let mut child = Command::new(CLI)
        .args(["watch", "--initial", "--json", "--env", &env])
        .env("REGISTRAR_SERVER", server.url())
        .env("REGISTRAR_TOKEN", &server.admin)
        .env_remove("REGISTRAR_TOKEN_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a watch line within 20 s")
    };
    let mut initial = Vec::new();
    loop {
        let m = tokio::task::block_in_place(next);
        assert!(m["token"].as_str().is_some_and(|t| !t.is_empty()), "{m}");
        if m["bookmark"]["initialStateDone"] == true {
            break;
        }
        initial.push(m);
    }
    assert!(
        initial
            .iter()
            .any(|m| m["registryChanged"]["address"] == "first.example.com"),
        "{initial:?}"
    );
    admin
        .add_registry(custom(&env, "second.example.com", "u", "p"))
        .await;
    let change = loop {
        let m = tokio::task::block_in_place(next);
        if m.get("bookmark").is_none() {
            break m;
        }
    };
    assert_eq!(change["registryChanged"]["address"], "second.example.com");
    assert!(change["registryChanged"].get("password").is_none());
    let _ = child.kill();
    let _ = child.wait();
}

// ---- the docker credential helper

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_helper_hands_out_the_credential_for_a_registry_host() {
    let server = TestServer::start().await;
    let env = new_env(&server, "cattle").await;
    add_registry(&server, &env, "reg.example.com:5000", "s3cret").await;
    let agent = agent_token(&server, &env).await;

    for asked in ["reg.example.com:5000", "https://reg.example.com:5000/v2/"] {
        let ran = helper(&server, &agent, "get").stdin(asked).run().await.ok();
        assert_eq!(
            ran.json(),
            serde_json::json!({"ServerURL": asked, "Username": "alice", "Secret": "s3cret"})
        );
    }
    let listed = helper(&server, &agent, "list").run().await.ok();
    assert_eq!(
        listed.json(),
        serde_json::json!({"reg.example.com:5000": "alice"})
    );
    let version = helper(&server, &agent, "version").run().await.ok();
    assert!(
        version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );

    // The token may come from a file instead.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.token");
    std::fs::write(&file, format!("{agent}\n")).unwrap();
    let ran = Prog::new(HELPER)
        .args(&["get"])
        .env("REGISTRAR_SERVER", server.url())
        .env("REGISTRAR_TOKEN_FILE", &file)
        .stdin("reg.example.com:5000")
        .run()
        .await
        .ok();
    assert_eq!(ran.json()["Secret"], "s3cret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_helper_says_not_found_when_there_is_nothing_to_hand_out() {
    let server = TestServer::start().await;
    let env = new_env(&server, "cattle").await;
    let reg = add_registry(&server, &env, "reg.example.com:5000", "s3cret").await;
    let agent = agent_token(&server, &env).await;

    // An unknown host, Docker Hub without a credential, garbage.
    for asked in [
        "other.example.com",
        "https://index.docker.io/v1/",
        "bad host!",
    ] {
        let ran = helper(&server, &agent, "get").stdin(asked).run().await;
        assert_eq!(
            (ran.stdout.trim(), ran.code),
            (NOT_FOUND, 1),
            "{asked}: {ran:?}"
        );
    }
    // Inactive.
    cli(&server, &server.admin)
        .args(&["registry", "deactivate", &reg])
        .run()
        .await
        .ok();
    let ran = helper(&server, &agent, "get")
        .stdin("reg.example.com:5000")
        .run()
        .await;
    assert_eq!((ran.stdout.trim(), ran.code), (NOT_FOUND, 1), "{ran:?}");
    assert!(
        ran.stderr.contains("DENY_REASON_REGISTRY_INACTIVE"),
        "{ran:?}"
    );
    let listed = helper(&server, &agent, "list").run().await.ok();
    assert_eq!(listed.json(), serde_json::json!({}));
    cli(&server, &server.admin)
        .args(&["registry", "activate", &reg])
        .run()
        .await
        .ok();
    // Not whitelisted.
    cli(&server, &server.admin)
        .args(&["settings", "set", "--whitelist", "quay.io"])
        .run()
        .await
        .ok();
    let ran = helper(&server, &agent, "get")
        .stdin("reg.example.com:5000")
        .run()
        .await;
    assert_eq!((ran.stdout.trim(), ran.code), (NOT_FOUND, 1), "{ran:?}");
    assert!(
        ran.stderr.contains("DENY_REASON_NOT_WHITELISTED"),
        "{ran:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_helper_reports_other_failures_on_stdout() {
    let server = TestServer::start().await;
    for action in ["store", "erase"] {
        let ran = helper(&server, "t", action)
            .stdin(r#"{"ServerURL":"r","Username":"u","Secret":"s"}"#)
            .run()
            .await;
        assert_eq!(ran.code, 1);
        assert!(ran.stdout.contains("read-only"), "{ran:?}");
    }
    let ran = helper(&server, "rgr.bad.token", "get")
        .stdin("r:1")
        .run()
        .await;
    assert_eq!(ran.code, 1);
    assert!(ran.stdout.contains("UNAUTHENTICATED"), "{ran:?}");
    assert!(!ran.stdout.contains("rgr.bad.token"));
    let ran = Prog::new(HELPER)
        .args(&["get"])
        .env("REGISTRAR_SERVER", "http://127.0.0.1:1")
        .env("REGISTRAR_TOKEN", "t")
        .stdin("r:1")
        .run()
        .await;
    assert_eq!(ran.code, 1);
    assert!(ran.stdout.contains("cannot connect"), "{ran:?}");
    let ran = helper(&server, "t", "get").stdin("").run().await;
    assert_eq!(ran.code, 1);
    assert!(ran.stdout.contains("no server URL"), "{ran:?}");
    // The token is never read from argv: a second argument is ignored.
    let ran = Prog::new(HELPER)
        .args(&["get", "--token", "x"])
        .env("REGISTRAR_SERVER", server.url())
        .stdin("r:1")
        .run()
        .await;
    assert!(ran.stdout.contains("UNAUTHENTICATED"), "{ran:?}");
}

// ---- the kubelet credential provider

fn kubelet_request(image: &str) -> String {
    serde_json::json!({
        "kind": "CredentialProviderRequest",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "image": image,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_provider_answers_with_the_server_s_response() {
    let server = TestServer::start().await;
    let env = new_env(&server, "kubernetes").await;
    add_registry(&server, &env, "reg.example.com:5000", "s3cret").await;
    let agent = agent_token(&server, &env).await;
    let ran = cli(&server, &agent)
        .args(&["kubelet-credential-provider"])
        .stdin(&kubelet_request("reg.example.com:5000/team/app:1"))
        .run()
        .await
        .ok();
    let v = ran.json();
    assert_eq!(v["kind"], "CredentialProviderResponse");
    assert_eq!(v["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
    assert_eq!(v["cacheKeyType"], "Registry");
    assert_eq!(v["auth"]["reg.example.com:5000"]["username"], "alice");
    assert_eq!(v["auth"]["reg.example.com:5000"]["password"], "s3cret");

    // Verbatim: exactly ResolvePull's credential_provider_response.
    let mut a = server.clients_with(Some(&agent)).await;
    let r = a
        .resolve("", "reg.example.com:5000/team/app:1")
        .await
        .unwrap();
    let Some(pb::pull_allowed::Orchestrator::Kubernetes(k)) = &common::allowed(&r).orchestrator
    else {
        panic!("a kubernetes answer")
    };
    assert_eq!(ran.stdout.trim(), k.credential_provider_response);

    // An image of a registry without a credential: an empty auth.
    let ran = cli(&server, &agent)
        .args(&["kubelet-credential-provider"])
        .stdin(&kubelet_request("quay.io/x/y:1"))
        .run()
        .await
        .ok();
    assert_eq!(ran.json()["auth"], serde_json::json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_provider_fails_the_pull_on_a_denial_or_a_bad_request() {
    let server = TestServer::start().await;
    let env = new_env(&server, "kubernetes").await;
    let agent = agent_token(&server, &env).await;
    cli(&server, &server.admin)
        .args(&["settings", "set", "--whitelist", "quay.io"])
        .run()
        .await
        .ok();
    let ran = cli(&server, &agent)
        .args(&["kubelet-credential-provider"])
        .stdin(&kubelet_request("reg.example.com:5000/app:1"))
        .run()
        .await;
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stdout.is_empty());
    assert!(ran.stderr.contains("not whitelisted"), "{ran:?}");

    let ran = cli(&server, &agent)
        .args(&["kubelet-credential-provider"])
        .stdin(r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1","image":"x"}"#)
        .run()
        .await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("apiVersion"), "{ran:?}");
}

/// The provider entry of deploy/kubernetes/kubelet-credential-provider.yaml.
fn deployed_provider() -> serde_yaml::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes/kubelet-credential-provider.yaml");
    let config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1");
    assert_eq!(config["kind"], "CredentialProviderConfig");
    let provider = config["providers"][0].clone();
    assert_eq!(provider["name"], "registrar", "the binary's name");
    assert_eq!(
        provider["apiVersion"],
        "credentialprovider.kubelet.k8s.io/v1"
    );
    assert!(provider["matchImages"]
        .as_sequence()
        .is_some_and(|m| !m.is_empty()));
    assert!(provider["defaultCacheDuration"].as_str().is_some());
    provider
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_kubelet_config_runs_the_provider_as_the_kubelet_would() {
    let server = TestServer::start().await;
    let env = new_env(&server, "kubernetes").await;
    add_registry(&server, &env, "reg.example.com:5000", "s3cret").await;
    let agent = agent_token(&server, &env).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file: PathBuf = dir.path().join("agent.token");
    std::fs::write(&token_file, &agent).unwrap();

    let provider = deployed_provider();
    let args: Vec<&str> = provider["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mut prog = Prog::new(CLI).args(&args);
    // The kubelet passes the configured variables; this test's server and
    // token file stand in for the example's values.
    for var in provider["env"].as_sequence().unwrap() {
        let name = var["name"].as_str().unwrap();
        let value = match name {
            "REGISTRAR_SERVER" => server.url(),
            "REGISTRAR_TOKEN_FILE" => token_file.display().to_string(),
            other => panic!("unexpected variable {other}"),
        };
        prog = prog.env(name, value);
    }
    let ran = prog
        .stdin(&kubelet_request("reg.example.com:5000/app:1"))
        .run()
        .await
        .ok();
    assert_eq!(
        ran.json()["auth"]["reg.example.com:5000"]["password"],
        "s3cret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_prints_the_changes_as_a_table_and_as_json() {
    let server = TestServer::start().await;
    let env = new_env(&server, "cattle").await;
    let id = add_registry(&server, &env, "r.example.com", "Hist-Pw-1").await;
    cli(&server, &server.admin)
        .args(&["registry", "deactivate", &id])
        .run()
        .await
        .ok();
    let table = cli(&server, &server.admin)
        .args(&["history", "--env", &env])
        .run()
        .await
        .ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("POSITION"), "{table:?}");
    assert!(
        lines[1].contains("registry deactivated") && lines[1].contains(&id),
        "{table:?}"
    );
    assert!(lines[2].contains("registry created"), "{table:?}");
    assert!(lines[3].contains("environment created"), "{table:?}");
    assert_eq!(lines.len(), 4, "{table:?}");
    let json = cli(&server, &server.admin)
        .args(&[
            "history",
            "--env",
            &env,
            "--registry",
            &id,
            "--json",
            "--limit",
            "1",
        ])
        .run()
        .await
        .ok();
    let events = json.json();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{json:?}");
    assert_eq!(events[0]["action"], "HISTORY_ACTION_REGISTRY_DEACTIVATED");
    assert_eq!(events[0]["changedFields"][0], "state");
    assert!(!table.stdout.contains("Hist-Pw-1") && !json.stdout.contains("Hist-Pw-1"));
}
