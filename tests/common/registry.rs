//! Debian's docker-registry on 127.0.0.1: started by a test with the
//! authentication it is given, over TLS or plain HTTP, stopped on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Returns the program's path, or fails naming it and where it comes from.
pub fn require(program: &str, from: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the end-to-end tests need `{program}` on PATH ({from}); \
                 .ci/run installs it"
            )
        })
}

/// Runs `program` in `dir` and fails with its stderr unless it succeeds.
pub fn sh(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bcrypt htpasswd file with one user, written in `dir` by Apache's
/// `htpasswd`; returns the `auth:` block that uses it.
pub fn htpasswd(dir: &Path, user: &str, password: &str) -> String {
    require("htpasswd", "Debian package apache2-utils");
    sh("htpasswd", &["-Bbc", "htpasswd", user, password], dir);
    format!(
        "  htpasswd:\n    realm: registrar-e2e\n    path: {}\n",
        dir.join("htpasswd").display()
    )
}

/// The registry process, killed on drop.
pub struct DockerRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    log: PathBuf,
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DockerRegistry {
    /// Starts the registry on a free port with its storage and
    /// configuration in `dir`: over TLS with the (certificate, key) PEM
    /// files when given, and `auth` (YAML indented under `auth:`).
    /// Returns once it listens.
    pub fn start(dir: &Path, tls: Option<(&Path, &Path)>, auth: &str) -> Self {
        let program = require("docker-registry", "Debian package docker-registry");
        let port = super::free_port();
        let address = format!("127.0.0.1:{port}");
        let tls = tls
            .map(|(cert, key)| {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                )
            })
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}/storage\n\
             http:\n  addr: {address}\n  secret: registrar-e2e\n{tls}\
             auth:\n{auth}",
            root = dir.display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log_path = dir.join("registry.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(program)
            .args(["serve", "config.yml"])
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let mut r = Self {
            child,
            address: address.clone(),
            log: log_path,
        };
        let addr: SocketAddr = address.parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(&r.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }
}
