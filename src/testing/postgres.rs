//! A PostgreSQL server for tests, from the machine's `postgresql` package:
//! a cluster in a temporary directory, on a free loopback port, trusting
//! local connections. Started once per test process; a watchdog stops it and
//! removes its directory when the process ends. As root it runs as the
//! `postgres` user (PostgreSQL refuses root). A missing package fails with
//! its name, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running test server: the process's shared one, or one a test owns
/// and may stop and start again (as a database restart under load).
#[derive(Debug)]
pub struct TestPostgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    base: PathBuf,
    root: bool,
    options: Vec<String>,
}

static SERVER: OnceLock<TestPostgres> = OnceLock::new();

impl TestPostgres {
    /// Returns the process's server, starting it on first use.
    ///
    /// # Panics
    ///
    /// Panics with what to install when PostgreSQL's server programs are
    /// missing, or with the server's log when it does not start.
    pub fn shared() -> &'static TestPostgres {
        SERVER.get_or_init(|| Self::own(Vec::new()))
    }

    /// Starts a server of the caller's own, with extra `-c name=value`
    /// settings; the watchdog stops it and removes its directory when the
    /// process ends.
    pub fn own(options: Vec<String>) -> TestPostgres {
        let server = init(options);
        server.start();
        server
    }

    /// Writes `cert` and `key` (PEM) into the cluster and turns TLS on at
    /// the next start.
    pub fn with_tls(mut self, cert: &str, key: &str) -> TestPostgres {
        self.stop();
        let data = self.base.join("data");
        std::fs::write(data.join("server.crt"), cert).expect("write the server certificate");
        std::fs::write(data.join("server.key"), key).expect("write the server key");
        std::fs::set_permissions(
            data.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod the server key");
        if self.root {
            chown(&data);
        }
        self.options.extend(["ssl=on".to_owned()]);
        self.start();
        self
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start(&self) {
        let data = self.base.join("data");
        let log = self.base.join("server.log");
        let mut options = format!("-h 127.0.0.1 -p {} -k {}", self.port, self.base.display());
        for o in ["max_connections=200"]
            .iter()
            .map(|s| s.to_string())
            .chain(self.options.iter().cloned())
        {
            options.push_str(&format!(" -c {o}"));
        }
        // Durability settings stay as in production: the tests check commits.
        let out = as_server_user(&self.bin.join("pg_ctl"), self.root)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "30", "start"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "the test PostgreSQL did not start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.wait_ready();
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: no shutdown
    /// checkpoint, as a crash; committed transactions are in the WAL).
    pub fn stop(&self) {
        let out = as_server_user(&self.bin.join("pg_ctl"), self.root)
            .arg("-D")
            .arg(self.base.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the test PostgreSQL did not accept connections within 30 s: {}",
                std::fs::read_to_string(self.base.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns the URL of a new, empty database of this server.
    pub async fn fresh_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = format!("postgres://registrar@127.0.0.1:{}/postgres", self.port);
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("connect to the test PostgreSQL");
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = driver.await;
        format!("postgres://registrar@127.0.0.1:{}/{name}", self.port)
    }
}

fn chown(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .expect("chown the test cluster's directory");
    assert!(status.success(), "chown of {} failed", path.display());
}

/// Finds the newest installed PostgreSQL's `bin` directory.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server programs are not installed (no /usr/lib/postgresql/*/bin/postgres): \
             install Debian's `postgresql` package (apt-get install postgresql)"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command that runs as the `postgres` user when this process is root.
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Creates a cluster and its watchdog; does not start it.
fn init(options: Vec<String>) -> TestPostgres {
    let bin = bin_dir();
    let root = is_root();
    let base = std::env::temp_dir().join(format!("registrar-pg-{}", uuid::Uuid::new_v4().simple()));
    let data = base.join("data");
    std::fs::create_dir_all(&base).expect("a directory for the test cluster");
    if root {
        chown(&base);
    }
    let out = as_server_user(&bin.join("initdb"), root)
        .args([
            "-A",
            "trust",
            "-U",
            "registrar",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The watchdog: once this test process is gone, the server is stopped
    // and its directory removed. The loop ends with the process.
    let stop = format!(
        "{}{} -D {} stop -m immediate",
        if root { "runuser -u postgres -- " } else { "" },
        shell_quote(&bin.join("pg_ctl")),
        shell_quote(&data),
    );
    let watchdog = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {base}",
        parent = std::process::id(),
        base = shell_quote(&base),
    );
    // Not waited for: the watchdog outlives this process by design.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the test PostgreSQL's watchdog");
    TestPostgres {
        port,
        bin,
        base,
        root,
        options,
    }
}

/// Quotes a path for `sh`.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
