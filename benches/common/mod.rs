//! What the load generators share: the release server as a child process
//! on loopback, clients, memory samples and percentiles.
#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use registrar::pb;
use tonic::transport::Channel;

pub mod etcd;

/// Reads a count from the environment.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `registrar` binary serving a fresh data directory; killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub token: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command for `program`, on the CPU `SERVER_CPU` names when it is set
/// (with `taskset`, util-linux), so that server and load generator can be
/// kept on separate cores: `taskset -c 1 env SERVER_CPU=0 cargo bench ...`.
pub fn pinned(program: impl AsRef<std::ffi::OsStr>) -> Command {
    match std::env::var("SERVER_CPU") {
        Ok(cpu) if !cpu.is_empty() => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu).arg(program);
            command
        }
        _ => Command::new(program),
    }
}

/// The `registrar` binary (or `REGISTRAR_BIN`, another build to compare)
/// serving `data` on a free loopback port; returns it and its URL.
pub fn spawn_server(data: &std::path::Path) -> (Child, String) {
    let port = free_port();
    let program = registrar_program();
    let child = pinned(program)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

/// The server program: `REGISTRAR_BIN` when set (an older commit's build,
/// to compare), else this build's.
pub fn registrar_program() -> std::ffi::OsString {
    std::env::var_os("REGISTRAR_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_registrar").into())
}

/// Starts the server and waits until it answers; its admin token is read
/// from the data directory.
pub async fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, url) = spawn_server(&data);
    for _ in 0..200 {
        if let Ok(token) = std::fs::read_to_string(data.join("admin.token")) {
            if Channel::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
                .is_ok()
            {
                return Server {
                    child,
                    url,
                    token: token.trim().to_owned(),
                    _dir: dir,
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start");
}

/// Returns the resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Returns the CPU time a process has used so far (user and system, all
/// its threads), from `/proc/PID/stat` in the kernel's fixed 100 ticks per
/// second; `None` for the process itself reads `/proc/self/stat`.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name may hold spaces: the fields counted start after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15, the 12th and 13th after ')'.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Wraps a message with `authorization: Bearer <token>`.
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Connects to `url`.
pub async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Waits for closed-loop callers and returns all their latencies, sorted.
pub async fn sorted_latencies(
    callers: Vec<tokio::task::JoinHandle<Vec<Duration>>>,
) -> Vec<Duration> {
    let mut all = Vec::new();
    for caller in callers {
        all.extend(caller.await.unwrap());
    }
    all.sort();
    all
}

/// Returns the `p` quantile of sorted latencies, in milliseconds.
pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Creates an environment as `admin`; returns its id.
pub async fn create_environment(
    ch: &Channel,
    admin: &str,
    name: &str,
    orchestration: pb::Orchestration,
) -> String {
    pb::environment_service_client::EnvironmentServiceClient::new(ch.clone())
        .create_environment(with_token(
            admin,
            pb::CreateEnvironmentRequest {
                name: name.to_owned(),
                orchestration: orchestration as i32,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap()
        .id
}

/// Creates the registry at `address` in `env`, or replaces its credential
/// when it is there (user `user`, password `secret-<user>`), and checks the
/// answer; returns the new credential id.
pub async fn replace_credential(
    ch: &Channel,
    token: &str,
    env: &str,
    address: &str,
    user: &str,
) -> String {
    let r = pb::registry_service_client::RegistryServiceClient::new(ch.clone())
        .create_registry(with_token(
            token,
            pb::CreateRegistryRequest {
                environment_id: env.to_owned(),
                kind: pb::RegistryKind::Custom as i32,
                address: address.to_owned(),
                email: "ops@example.com".into(),
                username: user.to_owned(),
                password: format!("secret-{user}"),
                ..Default::default()
            },
        ))
        .await
        .expect("CreateRegistry")
        .into_inner();
    let reg = r.registry.expect("a registry");
    assert_eq!(
        (
            reg.address.as_str(),
            reg.username.as_str(),
            reg.environment_id.as_str()
        ),
        (address, user, env)
    );
    assert!(r.revision > 0 && !reg.credential_id.is_empty());
    reg.credential_id
}

/// Issues an agent token of `env` as `admin`.
pub async fn agent_token(ch: &Channel, admin: &str, env: &str) -> String {
    pb::token_service_client::TokenServiceClient::new(ch.clone())
        .create_token(with_token(
            admin,
            pb::CreateTokenRequest {
                role: pb::Role::Agent as i32,
                environment_id: env.to_owned(),
                description: "bench agent".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .token
}

/// Returns once `url` answers `grpc.health.v1.Health/Check` with SERVING;
/// panics if `child` exits first or nothing answers within `limit`.
pub async fn wait_serving(url: &str, child: &mut Child, limit: Duration) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(ch) = Channel::from_shared(url.to_owned())
            .unwrap()
            .connect()
            .await
        {
            let answer = HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if answer.is_ok_and(|a| a.get_ref().status() == ServingStatus::Serving) {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} did not serve within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
