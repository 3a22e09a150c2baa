//! Replica crashes (feature `e2e`: a real PostgreSQL): three replica
//! processes of the real binary on one database, writers spread over them,
//! a watcher per replica; at random moments one replica is killed with
//! SIGKILL and started again. Every acknowledged write is then on every
//! replica, the restarted ones included, and every watcher, which moved to
//! another replica with its last resume token whenever its own died, saw
//! every change exactly once and in commit order. `REPLICA_CRASH_CYCLES`
//! sets the number of kills (default 20).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::Rng;
use registrar::pb;
use registrar::testing::postgres::TestPostgres;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

const ADMIN: &str = "rgr.replica-admin.0123456789abcdef0123456789abcdef";
const REPLICAS: usize = 3;
const WRITERS: usize = 3;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn cycles() -> usize {
    std::env::var("REPLICA_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn authed<T>(message: T) -> Request<T> {
    authed_as(ADMIN, message)
}

fn authed_as<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii");
    request.metadata_mut().insert("authorization", value);
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// One replica process on a fixed port, its stderr in a file.
struct Replica {
    child: Child,
    port: u16,
    log: PathBuf,
    url: String,
    key: String,
    starts: usize,
}

impl Replica {
    fn spawn(url: &str, key: &str, logs: &Path, n: usize) -> Self {
        let mut r = Self {
            child: Command::new("true").spawn().expect("a placeholder"),
            port: free_port(),
            log: logs.join(format!("replica-{n}.log")),
            url: url.to_owned(),
            key: key.to_owned(),
            starts: 0,
        };
        let _ = r.child.wait();
        r.start();
        r
    }

    fn start(&mut self) {
        self.starts += 1;
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        self.child = Command::new(env!("CARGO_BIN_EXE_registrar"))
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .env("REGISTRAR_DATABASE_URL", &self.url)
            .env("REGISTRAR_KEY", &self.key)
            .env("REGISTRAR_ADMIN_TOKEN", ADMIN)
            .env("REGISTRAR_MAX_REGISTRIES_PER_ENVIRONMENT", "1000000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the server binary starts");
    }

    fn kill(&mut self) {
        // Child::kill sends SIGKILL.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A channel that reconnects by itself after the replica restarts.
    fn channel(&self) -> Channel {
        Endpoint::from_shared(self.address())
            .expect("url")
            .connect_timeout(Duration::from_millis(300))
            .timeout(CALL_TIMEOUT)
            .connect_lazy()
    }

    /// Waits until the replica answers an authenticated call.
    async fn ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!(
                    "replica on port {} exited during start-up with {status}:\n{}",
                    self.port,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "replica on port {} not ready in {READY_TIMEOUT:?}:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            let mut settings =
                pb::settings_service_client::SettingsServiceClient::new(self.channel());
            if settings
                .get_settings(authed(pb::GetSettingsRequest { min_revision: 0 }))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A transport failure of a killed replica, or UNAVAILABLE: the write may
/// or may not have been recorded, and its retry settles it.
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

/// Creates registries, each retried with its request id on another
/// replica until acknowledged; returns (revision, registry id) of each.
async fn write(
    channels: Vec<Channel>,
    env: String,
    writer: usize,
    stop: Arc<AtomicBool>,
    unexpected: Arc<Mutex<Vec<String>>>,
) -> Vec<(u64, String)> {
    let mut acked = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let request = pb::CreateRegistryRequest {
            environment_id: env.clone(),
            kind: pb::RegistryKind::Custom as i32,
            email: "ops@example.com".into(),
            address: format!("w{writer}-{i}.example.com"),
            username: "u".into(),
            password: format!("pw-{writer}-{i}"),
            request_id: format!("w{writer}-{i}"),
            ..Default::default()
        };
        let mut replica = rand::thread_rng().gen_range(0..REPLICAS);
        let mut attempts = 0;
        loop {
            let mut reg =
                pb::registry_service_client::RegistryServiceClient::new(channels[replica].clone());
            match reg.create_registry(authed(request.clone())).await {
                Ok(r) => {
                    let r = r.into_inner();
                    acked.push((r.revision, r.registry.expect("a registry").id));
                    break;
                }
                Err(status) => {
                    if !transient(&status) {
                        unexpected.lock().unwrap().push(format!(
                            "{}: {:?} {}",
                            request.request_id,
                            status.code(),
                            status.message()
                        ));
                        return acked;
                    }
                    attempts += 1;
                    assert!(
                        attempts < 400,
                        "{} was not acknowledged in 400 tries: {status:?}",
                        request.request_id
                    );
                    replica = (replica + 1) % REPLICAS;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
        i += 1;
    }
    acked
}

/// A watcher that follows its environment through replica deaths: when its
/// stream breaks it resumes on the next replica with its last token.
/// Returns the registry ids it saw, in order, once it has `expected` of
/// them (or more: a repeat shows up as an extra) and `done` is set.
async fn watch(
    channels: Vec<Channel>,
    agent: String,
    first: usize,
    done: Arc<AtomicBool>,
    expected: Arc<Mutex<Option<usize>>>,
) -> (Vec<String>, usize) {
    let mut replica = first;
    let mut token = String::new();
    let mut seen = Vec::new();
    let mut moves = 0;
    let deadline_after_done = Duration::from_secs(30);
    let mut done_at: Option<Instant> = None;
    loop {
        let mut pull = pb::pull_service_client::PullServiceClient::new(channels[replica].clone());
        let mut request = Request::new(pb::WatchRequest {
            min_revision: 0,
            environment_id: String::new(),
            resume_token: token.clone(),
            // The first stream starts with a bookmark, so the watcher holds
            // a token before any replica dies.
            send_initial_state: token.is_empty(),
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {agent}").parse().expect("ascii"),
        );
        if let Ok(stream) = pull.watch(request).await {
            let mut stream = stream.into_inner();
            loop {
                let wanted = *expected.lock().unwrap();
                if let Some(n) = wanted {
                    if seen.len() >= n {
                        return (seen, moves);
                    }
                }
                if done.load(Ordering::SeqCst) {
                    let at = *done_at.get_or_insert_with(Instant::now);
                    assert!(
                        at.elapsed() < deadline_after_done,
                        "watcher saw {} changes, {:?} expected",
                        seen.len(),
                        wanted
                    );
                }
                match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                    Err(_) => continue,
                    Ok(Ok(Some(m))) => {
                        if let Some(pb::watch_response::Event::RegistryChanged(r)) = &m.event {
                            seen.push(r.id.clone());
                        }
                        if !m.token.is_empty() {
                            token = m.token;
                        }
                    }
                    Ok(Ok(None) | Err(_)) => break,
                }
            }
        }
        replica = (replica + 1) % REPLICAS;
        moves += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replicas_lose_no_acknowledged_write_and_watchers_resume_elsewhere() {
    let url = TestPostgres::shared().fresh_database().await;
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let logs = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|n| Replica::spawn(&url, &key, logs.path(), n))
        .collect();
    for r in &mut replicas {
        r.ready().await;
    }
    let channels: Vec<Channel> = replicas.iter().map(Replica::channel).collect();

    let mut envs =
        pb::environment_service_client::EnvironmentServiceClient::new(channels[0].clone());
    let env = envs
        .create_environment(authed(pb::CreateEnvironmentRequest {
            name: "crash".into(),
            orchestration: pb::Orchestration::Cattle as i32,
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap()
        .id;
    let mut tokens = pb::token_service_client::TokenServiceClient::new(channels[0].clone());
    let agent = tokens
        .create_token(authed(pb::CreateTokenRequest {
            role: pb::Role::Agent as i32,
            environment_id: env.clone(),
            description: "watcher".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .token;

    let done = Arc::new(AtomicBool::new(false));
    let expected = Arc::new(Mutex::new(None));
    let watchers: Vec<_> = (0..REPLICAS)
        .map(|n| {
            tokio::spawn(watch(
                channels.clone(),
                agent.clone(),
                n,
                Arc::clone(&done),
                Arc::clone(&expected),
            ))
        })
        .collect();
    // Let every watcher open its stream before the first write.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let unexpected = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(write(
                channels.clone(),
                env.clone(),
                w,
                Arc::clone(&stop),
                Arc::clone(&unexpected),
            ))
        })
        .collect();

    let cycles = cycles();
    for _ in 0..cycles {
        let wait = rand::thread_rng().gen_range(20..250);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let victim = rand::thread_rng().gen_range(0..REPLICAS);
        replicas[victim].kill();
        // Sometimes it comes back at once, sometimes after the others took
        // writes without it.
        if rand::thread_rng().gen_bool(0.5) {
            tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..300))).await;
        }
        replicas[victim].start();
        replicas[victim].ready().await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let unexpected = unexpected.lock().unwrap().clone();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
    assert!(
        acked.len() > cycles,
        "too few writes to mean anything: {}",
        acked.len()
    );
    acked.sort();
    let revisions: std::collections::BTreeSet<u64> = acked.iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions.len(), acked.len(), "two writes at one revision");
    let head = acked.last().unwrap().0;

    // Every acknowledged write is on every replica, restarted ones too.
    let want: Vec<String> = acked.iter().map(|(_, id)| id.clone()).collect();
    for (n, ch) in channels.iter().enumerate() {
        let mut reg = pb::registry_service_client::RegistryServiceClient::new(ch.clone());
        let mut listed = std::collections::HashSet::new();
        let mut page_token = String::new();
        loop {
            let page = reg
                .list_registries(authed(pb::ListRegistriesRequest {
                    environment_id: env.clone(),
                    page_size: 500,
                    page_token,
                    min_revision: head,
                }))
                .await
                .unwrap_or_else(|s| panic!("list on replica {n}: {s:?}"))
                .into_inner();
            listed.extend(page.registries.into_iter().map(|r| r.id));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        for id in &want {
            assert!(listed.contains(id), "replica {n} lacks acknowledged {id}");
        }
        assert_eq!(
            listed.len(),
            want.len(),
            "replica {n} has writes nobody made"
        );
    }

    // Every watcher saw every change once, in commit order, wherever it
    // had to resume.
    *expected.lock().unwrap() = Some(want.len());
    done.store(true, Ordering::SeqCst);
    let mut moved = 0;
    for (n, w) in watchers.into_iter().enumerate() {
        let (seen, moves) = w.await.unwrap();
        assert_eq!(seen, want, "watcher {n} (moved {moves} times)");
        moved += moves;
    }
    let restarts: usize = replicas.iter().map(|r| r.starts - 1).sum();
    println!(
        "{cycles} kills, {restarts} restarts, {} acknowledged writes, watchers moved {moved} times",
        acked.len()
    );
    assert!(moved > 0, "no watcher ever had to resume elsewhere");
}
