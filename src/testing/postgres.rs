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

/// A running test server.
#[derive(Debug)]
pub struct TestPostgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
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
        SERVER.get_or_init(start)
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

fn start() -> TestPostgres {
    let bin = bin_dir();
    let root = is_root();
    let base = std::env::temp_dir().join(format!("registrar-pg-{}", uuid::Uuid::new_v4().simple()));
    let data = base.join("data");
    std::fs::create_dir_all(&base).expect("a directory for the test cluster");
    if root {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&base)
            .status()
            .expect("chown the test cluster's directory");
        assert!(status.success(), "chown of {} failed", base.display());
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
    let log = base.join("server.log");
    // Durability settings stay as in production: the tests check commits.
    let server = format!(
        "{}{} -D {} -h 127.0.0.1 -p {port} -k {} -c max_connections=200 > {} 2>&1",
        if root { "runuser -u postgres -- " } else { "" },
        shell_quote(&bin.join("postgres")),
        shell_quote(&data),
        shell_quote(&base),
        shell_quote(&log),
    );
    // The watchdog: the server runs until this test process is gone, then
    // is stopped and its directory removed. The loop ends with the process.
    let stop = format!(
        "{}{} -D {} stop -m immediate",
        if root { "runuser -u postgres -- " } else { "" },
        shell_quote(&bin.join("pg_ctl")),
        shell_quote(&data),
    );
    let watchdog = format!(
        "{server} & pg=$!; while kill -0 {parent} 2>/dev/null && kill -0 $pg 2>/dev/null; do sleep 1; done; \
         {stop} >/dev/null 2>&1; wait $pg; rm -rf {base}",
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
        .expect("start the test PostgreSQL");
    let started = Instant::now();
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the test PostgreSQL did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    TestPostgres { port }
}

/// Quotes a path for `sh`.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
