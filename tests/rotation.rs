//! Key-encryption-key rotation as the README's procedure runs it, with the
//! server binary and the CLI: add a key, restart, rewrap (also killed in the
//! middle), retire the old key. Every credential stays readable throughout,
//! and afterwards the old key alone opens nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{custom, Bearer, Clients};
use registrar::crypto::{KeySource, Keyring, WrappedKey};
use registrar::pb;
use registrar::store::sled::SledStore;
use registrar::store::KeyStore;

const ADMIN: &str = "rgr.rotation-admin.0123456789abcdef0123456789abcdef0123456789";
const CREDENTIALS: usize = 40;

struct Server {
    child: Child,
    url: String,
}

fn start(data: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("REGISTRAR_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server binary starts");
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

impl Server {
    async fn clients(&mut self) -> Clients {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited with {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server not ready"
            );
            if let Ok(ch) = tonic::transport::Channel::from_shared(self.url.clone())
                .unwrap()
                .connect()
                .await
            {
                return Clients::over(ch, Bearer::new(Some(ADMIN)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(10), "no clean stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI against `server`, as the admin.
fn cli(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(args)
        .env("REGISTRAR_SERVER", &server.url)
        .env("REGISTRAR_TOKEN", ADMIN)
        .output()
        .expect("the CLI runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn password(i: usize) -> String {
    format!("rotation-secret-{i}")
}

/// Asserts that every credential resolves with its password.
async fn all_readable(c: &mut Clients, env: &str) {
    for i in 0..CREDENTIALS {
        let answer = c.resolve(env, &format!("r{i}.io/app:1")).await.unwrap();
        let credential = common::allowed(&answer).credential.clone().unwrap();
        assert_eq!(credential.password, password(i), "credential {i}");
    }
}

/// The wrapped data keys of a stopped server's data directory.
async fn wrapped_keys(data: &Path) -> Vec<(String, WrappedKey)> {
    let store = SledStore::open(data).unwrap();
    let keys = store.keys();
    let mut out = Vec::new();
    for id in keys.list().await.unwrap() {
        out.push((
            id.clone(),
            WrappedKey(keys.get(&id).await.unwrap().unwrap()),
        ));
    }
    drop(keys);
    store.close().await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_rotation_keeps_every_credential_and_retires_the_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("registrar-data");
    let key_file: PathBuf = tmp.path().join("registrar-data.key");
    let key_arg = key_file.to_str().unwrap().to_owned();

    let mut server = start(&data);
    let mut c = server.clients().await;
    let env = c.create_env("rot", pb::Orchestration::Cattle).await;
    for i in 0..CREDENTIALS {
        c.reg
            .create_registry(custom(&env, &format!("r{i}.io"), "u", &password(i)))
            .await
            .unwrap();
    }
    let old_key_file = tmp.path().join("old.key");
    std::fs::copy(&key_file, &old_key_file).unwrap();

    // 1. Add the new key; the running server still uses the old one.
    let new_id = stdout(&cli(&server, &["key", "add", "--key-file", &key_arg]))
        .trim()
        .to_owned();
    // 2. Restart.
    server.stop();
    let mut server = start(&data);
    let mut c = server.clients().await;
    all_readable(&mut c, &env).await;
    let status = stdout(&cli(&server, &["key", "status"]));
    assert!(status.contains(&new_id), "{status}");
    // 3. Rewrap: part of it, then the rest under a kill at a random moment.
    let part = stdout(&cli(&server, &["key", "rewrap", "--limit", "10"]));
    assert!(part.contains("re-wrapped 10 data keys"), "{part}");
    assert!(
        part.contains(&format!("{} left", CREDENTIALS - 10)),
        "{part}"
    );
    let rewrap = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["key", "rewrap", "--limit", "5"])
        .env("REGISTRAR_SERVER", &server.url)
        .env("REGISTRAR_TOKEN", ADMIN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(rand_ms())).await;
    server.kill();
    drop(rewrap);
    // Killed in the middle: both keys are in the file, every key opens.
    let mut server = start(&data);
    let mut c = server.clients().await;
    all_readable(&mut c, &env).await;
    let done = stdout(&cli(&server, &["key", "rewrap"]));
    assert!(done.contains("0 left under older keys"), "{done}");
    // 4. Retire the old key, restart on the new key alone.
    let retired = stdout(&cli(&server, &["key", "retire", "--key-file", &key_arg]));
    assert!(retired.contains("removed"), "{retired}");
    server.stop();
    let held = Keyring::load(&KeySource::File(key_file.clone()), false).unwrap();
    assert_eq!(held.key_ids(), std::slice::from_ref(&new_id));
    let mut server = start(&data);
    let mut c = server.clients().await;
    all_readable(&mut c, &env).await;
    server.stop();

    // The old key file alone opens nothing: no stored data key unwraps
    // under it, and a server given it refuses to start.
    let old = Keyring::load(&KeySource::File(old_key_file.clone()), false).unwrap();
    let wrapped = wrapped_keys(&data).await;
    assert_eq!(wrapped.len(), CREDENTIALS);
    for (id, w) in &wrapped {
        assert!(
            old.unwrap_key(w, id).is_err(),
            "{id} opens under the old key"
        );
        assert!(held.unwrap_key(w, id).is_ok());
    }
    let refused = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--key-file")
        .arg(&old_key_file)
        .env("REGISTRAR_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("does not match"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_refuses_while_data_keys_still_need_the_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("registrar-data");
    let key_file = tmp.path().join("registrar-data.key");
    let key_arg = key_file.to_str().unwrap().to_owned();
    let mut server = start(&data);
    let mut c = server.clients().await;
    let env = c.create_env("rot", pb::Orchestration::Cattle).await;
    c.reg
        .create_registry(custom(&env, "r0.io", "u", &password(0)))
        .await
        .unwrap();
    stdout(&cli(&server, &["key", "add", "--key-file", &key_arg]));
    // Before the restart the server still runs on the old key.
    let early = cli(&server, &["key", "retire", "--key-file", &key_arg]);
    assert!(!early.status.success());
    assert!(String::from_utf8_lossy(&early.stderr).contains("restart the server"));
    server.stop();
    let mut server = start(&data);
    server.clients().await;
    let refused = cli(&server, &["key", "retire", "--key-file", &key_arg]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("registrar key rewrap"), "{err}");
    let ids = Keyring::load(&KeySource::File(key_file.clone()), false)
        .unwrap()
        .key_ids();
    assert_eq!(ids.len(), 2, "nothing was removed");
    server.stop();
}

/// A moment within the full rewrap's run, from the clock's low bits.
fn rand_ms() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos % 40)
}
