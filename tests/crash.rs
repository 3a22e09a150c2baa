//! Crash safety: the real server binary under concurrent write load, killed
//! with SIGKILL at random moments (some during start-up) and restarted on the
//! same data directory. `CRASH_CYCLES` sets the number of kills (default 20).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use registrar::app::App;
use registrar::crypto::{Kek, KeySource};
use registrar::domain::state::{RegistryState, State};
use registrar::pb;
use registrar::store::sled::SledStore;
use registrar::store::{payload, EventLog, KeyStore};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

const ADMIN: &str = "rgr.crash-admin.0123456789abcdef0123456789abcdef";
const WORKERS: usize = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

fn cycles() -> usize {
    std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Returns a free loopback port (the listener is closed before the server binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A server child process with its stderr in a file.
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

fn spawn(data: &Path, logs: &Path, n: usize) -> Server {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = logs.join(format!("server-{n}.log"));
    let stderr = File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(data)
        .env("REGISTRAR_ADMIN_TOKEN", ADMIN)
        // Hundreds of cycles of writers create thousands of registries in
        // one environment: no quota is the subject here.
        .env("REGISTRAR_MAX_REGISTRIES_PER_ENVIRONMENT", "1000000")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("server binary starts");
    Server { child, addr, log }
}

impl Server {
    fn kill(mut self) {
        // Child::kill sends SIGKILL.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server answers an authenticated call.
    async fn ready(&mut self) -> Channel {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!(
                    "the server exited during start-up with {status}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "the server did not become ready in {READY_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
                .expect("url")
                .connect_timeout(Duration::from_millis(200))
                .timeout(CALL_TIMEOUT);
            if let Ok(channel) = endpoint.connect().await {
                let mut settings =
                    pb::settings_service_client::SettingsServiceClient::new(channel.clone());
                if settings
                    .get_settings(authed(pb::GetSettingsRequest { min_revision: 0 }))
                    .await
                    .is_ok()
                {
                    return channel;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {ADMIN}").parse().expect("ascii");
    request.metadata_mut().insert("authorization", value);
    request
}

/// What the test knows of one registry from acknowledged answers.
#[derive(Debug, Clone)]
struct Known {
    id: String,
    address: String,
    credential_id: String,
    password: String,
    active: bool,
}

/// A write whose answer was not OK: its outcome is unknown until retried.
#[derive(Debug, Clone)]
enum Op {
    Create {
        request_id: String,
        address: String,
        password: String,
    },
    Update {
        request_id: String,
        index: usize,
        password: String,
    },
    SetActive {
        request_id: String,
        index: usize,
        active: bool,
    },
    Delete {
        request_id: String,
        index: usize,
    },
}

/// One writer's registries and its unresolved write.
#[derive(Debug, Default)]
struct Worker {
    n: usize,
    seq: u64,
    registries: Vec<Known>,
    deleted: Vec<String>,
    pending: Option<Op>,
    /// Addresses written since the last check.
    touched: Vec<String>,
    acknowledged: u64,
    /// Codes of failed calls other than those a killed server causes.
    unexpected: Vec<String>,
}

impl Worker {
    fn next_op(&mut self, rng: &mut StdRng) -> Op {
        self.seq += 1;
        let request_id = format!("w{}-{}", self.n, self.seq);
        let password = format!("pw-{}-{}-{}", self.n, self.seq, rng.gen::<u32>());
        // Past a few dozen registries deletes win, so the state (and every
        // check of it) stays small however many cycles run.
        let roll = if self.registries.len() > 24 {
            rng.gen_range(25..100)
        } else {
            rng.gen_range(0..100)
        };
        if self.registries.is_empty() || roll < 50 {
            return Op::Create {
                request_id,
                address: format!("w{}-{}.example.com", self.n, self.seq),
                password,
            };
        }
        let index = rng.gen_range(0..self.registries.len());
        match roll {
            50..=74 => Op::Update {
                request_id,
                index,
                password,
            },
            75..=87 => Op::SetActive {
                request_id,
                index,
                active: !self.registries[index].active,
            },
            _ => Op::Delete { request_id, index },
        }
    }

    /// Sends one write; on OK records its effect, otherwise returns the error.
    async fn send(&mut self, channel: &Channel, env: &str, op: &Op) -> Result<(), tonic::Status> {
        let mut reg = pb::registry_service_client::RegistryServiceClient::new(channel.clone());
        match op {
            Op::Create {
                request_id,
                address,
                password,
            } => {
                let r = reg
                    .create_registry(authed(pb::CreateRegistryRequest {
                        environment_id: env.to_owned(),
                        kind: pb::RegistryKind::Custom as i32,
                        address: address.clone(),
                        email: "ops@example.com".into(),
                        username: "crash".into(),
                        password: password.clone(),
                        request_id: request_id.clone(),
                        ..Default::default()
                    }))
                    .await?
                    .into_inner()
                    .registry
                    .expect("a registry");
                assert_eq!(&r.address, address);
                self.touched.push(address.clone());
                self.registries.push(Known {
                    id: r.id,
                    address: address.clone(),
                    credential_id: r.credential_id,
                    password: password.clone(),
                    active: true,
                });
            }
            Op::Update {
                request_id,
                index,
                password,
            } => {
                let known = &mut self.registries[*index];
                let r = reg
                    .update_registry(authed(pb::UpdateRegistryRequest {
                        id: known.id.clone(),
                        password: password.clone(),
                        request_id: request_id.clone(),
                        ..Default::default()
                    }))
                    .await?
                    .into_inner()
                    .registry
                    .expect("a registry");
                known.credential_id = r.credential_id;
                known.password = password.clone();
                self.touched.push(known.address.clone());
            }
            Op::SetActive {
                request_id,
                index,
                active,
            } => {
                let known = &mut self.registries[*index];
                let id = known.id.clone();
                let request_id = request_id.clone();
                let r = if *active {
                    reg.activate_registry(authed(pb::ActivateRegistryRequest { id, request_id }))
                        .await?
                        .into_inner()
                        .registry
                } else {
                    reg.deactivate_registry(authed(pb::DeactivateRegistryRequest {
                        id,
                        request_id,
                    }))
                    .await?
                    .into_inner()
                    .registry
                };
                let state = r.expect("a registry").state;
                let expected = if *active {
                    pb::RegistryState::Active
                } else {
                    pb::RegistryState::Inactive
                };
                assert_eq!(state, expected as i32);
                known.active = *active;
                self.touched.push(known.address.clone());
            }
            Op::Delete { request_id, index } => {
                let id = self.registries[*index].id.clone();
                reg.delete_registry(authed(pb::DeleteRegistryRequest {
                    id: id.clone(),
                    request_id: request_id.clone(),
                }))
                .await?;
                self.registries.remove(*index);
                self.deleted.push(id);
            }
        }
        self.acknowledged += 1;
        Ok(())
    }

    /// Writes until told to stop or until a write fails (the server died).
    async fn run(
        mut self,
        channel: Channel,
        env: String,
        stop: Arc<AtomicBool>,
        seed: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        while !stop.load(Ordering::SeqCst) {
            let op = self.next_op(&mut rng);
            if let Err(status) = self.send(&channel, &env, &op).await {
                // A killed server resets connections: UNAVAILABLE, UNKNOWN
                // (transport errors), CANCELLED or a deadline.
                if !matches!(
                    status.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
                ) {
                    self.unexpected.push(format!(
                        "{op:?}: {:?} {}",
                        status.code(),
                        status.message()
                    ));
                }
                self.pending = Some(op);
                break;
            }
        }
        self
    }

    /// Retries the unresolved write with its request id: it must now succeed,
    /// either as the first answer replayed or as a new write.
    async fn resolve(&mut self, channel: &Channel, env: &str) {
        if let Some(op) = self.pending.take() {
            if let Err(status) = self.send(channel, env, &op).await {
                panic!("the retry of {op:?} failed: {status:?}");
            }
        }
    }
}

/// Lists every registry of `env` through the API.
async fn list_all(channel: &Channel, env: &str) -> BTreeMap<String, pb::Registry> {
    let mut reg = pb::registry_service_client::RegistryServiceClient::new(channel.clone());
    let mut out = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = reg
            .list_registries(authed(pb::ListRegistriesRequest {
                min_revision: 0,
                environment_id: env.to_owned(),
                page_size: 500,
                page_token,
            }))
            .await
            .expect("list registries")
            .into_inner();
        for r in page.registries {
            out.insert(r.id.clone(), r);
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

/// Checks the live server against every acknowledged write.
async fn check_served(channel: &Channel, env: &str, workers: &mut [Worker]) {
    let listed = list_all(channel, env).await;
    let touched: Vec<String> = workers
        .iter_mut()
        .flat_map(|w| std::mem::take(&mut w.touched))
        .collect();
    let known: HashMap<&str, &Known> = workers
        .iter()
        .flat_map(|w| &w.registries)
        .map(|k| (k.id.as_str(), k))
        .collect();
    assert_eq!(
        listed.len(),
        known.len(),
        "the server lists {} registries, {} were acknowledged and not deleted",
        listed.len(),
        known.len()
    );
    for (id, k) in &known {
        let r = listed
            .get(*id)
            .unwrap_or_else(|| panic!("acknowledged registry {id} ({}) is lost", k.address));
        assert_eq!(
            r.credential_id, k.credential_id,
            "credential of {}",
            k.address
        );
        let state = if k.active {
            pb::RegistryState::Active
        } else {
            pb::RegistryState::Inactive
        };
        assert_eq!(r.state, state as i32, "state of {}", k.address);
    }
    for w in workers.iter() {
        for id in &w.deleted {
            assert!(!listed.contains_key(id), "deleted registry {id} is back");
        }
    }
    // The sealed passwords of what changed since the last check still open,
    // and each is the one last acknowledged.
    let mut pull = pb::pull_service_client::PullServiceClient::new(channel.clone());
    let by_address: HashMap<&str, &Known> =
        known.values().map(|k| (k.address.as_str(), *k)).collect();
    for address in &touched {
        let Some(k) = by_address.get(address.as_str()) else {
            continue;
        };
        if !k.active {
            continue;
        }
        let answer = pull
            .resolve_pull(authed(pb::ResolvePullRequest {
                min_revision: 0,
                environment_id: env.to_owned(),
                target: Some(pb::resolve_pull_request::Target::Registry(
                    k.address.clone(),
                )),
            }))
            .await
            .expect("resolve pull")
            .into_inner();
        let Some(pb::resolve_pull_response::Decision::Allowed(allowed)) = answer.decision else {
            panic!("{} is not allowed: {answer:?}", k.address);
        };
        let credential = allowed.credential.expect("a credential");
        assert_eq!(credential.credential_id, k.credential_id);
        assert!(
            credential.password == k.password,
            "{} serves another password than the one acknowledged",
            k.address
        );
    }
}

/// Opens the stopped server's data directory in this process: the store
/// verifies every record (positions gapless, checksums valid); the data keys
/// on disk are exactly those of the live credentials (checked before the
/// app's start-up sweep could hide a stray one); and the projection the app
/// folds at open equals a fold of the records done here, apart from it.
async fn check_on_disk(data: &Path) -> State {
    let kek = Kek::load(&KeySource::File(data.with_extension("key")), false).expect("key file");
    let store = SledStore::open(data).expect("the store opens and verifies");
    let log = store.log();
    let head = log.head();
    let records = log.read(1, usize::MAX).await.expect("read the whole log");
    assert_eq!(records.len() as u64, head, "records 1..={head}");
    let mut fresh = State::default();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.position, i as u64 + 1, "positions are gapless");
        fresh.apply(&payload::decode(r).expect("every record decodes"));
    }
    let mut keys = store.keys().list().await.expect("list keys");
    keys.sort();
    let mut live: Vec<String> = fresh.live_credential_ids().map(str::to_owned).collect();
    live.sort();
    assert_eq!(
        keys, live,
        "the data keys on disk are exactly those of the live credentials"
    );
    let app = App::open(
        Arc::clone(&log) as Arc<dyn EventLog>,
        store.keys() as Arc<dyn KeyStore>,
        kek,
        None,
    )
    .await
    .expect("the app opens");
    let folded = app.projection().read().clone();
    assert_eq!(folded, fresh, "the projection equals a fold done apart");
    app.close().await;
    drop((app, log));
    store.close().await.expect("close");
    fresh
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_servers_lose_no_acknowledged_write_and_always_restart() {
    let seed = seed();
    let cycles = cycles();
    eprintln!("crash harness: {cycles} cycles, CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");

    let mut starts = 0usize;
    let mut server = spawn(&data, &logs, starts);
    let channel = server.ready().await;
    let mut envs = pb::environment_service_client::EnvironmentServiceClient::new(channel);
    let env = envs
        .create_environment(authed(pb::CreateEnvironmentRequest {
            name: "crash".into(),
            orchestration: pb::Orchestration::Cattle as i32,
            request_id: "crash-env".into(),
        }))
        .await
        .expect("create environment")
        .into_inner()
        .environment
        .expect("environment")
        .id;

    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|n| Worker {
            n,
            ..Worker::default()
        })
        .collect();
    let (mut startup_kills, mut quiet_kills, mut loaded_kills) = (0, 0, 0);
    let started = Instant::now();
    for cycle in 0..cycles {
        let channel = server.ready().await;
        for w in &mut workers {
            w.resolve(&channel, &env).await;
        }
        check_served(&channel, &env, &mut workers).await;

        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = std::mem::take(&mut workers)
            .into_iter()
            .map(|w| {
                tokio::spawn(w.run(channel.clone(), env.clone(), Arc::clone(&stop), rng.gen()))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..150))).await;
        // One kill in four comes after the writers stopped, so the live
        // projection can be compared with the fold of what reached the disk.
        let quiet = rng.gen_ratio(1, 4);
        let mut live = None;
        if quiet {
            stop.store(true, Ordering::SeqCst);
            for t in tasks {
                workers.push(t.await.expect("worker"));
            }
            live = Some(list_all(&channel, &env).await);
            server.kill();
            quiet_kills += 1;
        } else {
            server.kill();
            loaded_kills += 1;
            for t in tasks {
                workers.push(t.await.expect("worker"));
            }
        }
        workers.sort_by_key(|w| w.n);
        for w in &workers {
            assert!(
                w.unexpected.is_empty(),
                "unexpected answers: {:?}",
                w.unexpected
            );
        }

        let folded = check_on_disk(&data).await;
        if let Some(live) = live {
            let on_disk: BTreeMap<&str, (&str, RegistryState)> = folded
                .registries_in(&env, "")
                .map(|r| {
                    (
                        r.id.as_str(),
                        (r.credential.credential_id.as_str(), r.state),
                    )
                })
                .collect();
            let served: BTreeMap<&str, (&str, RegistryState)> = live
                .values()
                .map(|r| {
                    let state = if r.state == pb::RegistryState::Active as i32 {
                        RegistryState::Active
                    } else {
                        RegistryState::Inactive
                    };
                    (r.id.as_str(), (r.credential_id.as_str(), state))
                })
                .collect();
            assert_eq!(served, on_disk, "cycle {cycle}: live view and fold differ");
        }

        // Some restarts are killed again during start-up.
        starts += 1;
        server = spawn(&data, &logs, starts);
        if rng.gen_ratio(1, 5) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
            server.kill();
            startup_kills += 1;
            check_on_disk(&data).await;
            starts += 1;
            server = spawn(&data, &logs, starts);
        }
    }
    let channel = server.ready().await;
    for w in &mut workers {
        w.resolve(&channel, &env).await;
    }
    check_served(&channel, &env, &mut workers).await;
    server.kill();
    check_on_disk(&data).await;
    let acknowledged: u64 = workers.iter().map(|w| w.acknowledged).sum();
    eprintln!(
        "crash harness: {cycles} cycles in {:?}: {acknowledged} acknowledged writes, \
         {loaded_kills} kills under load, {quiet_kills} quiet kills, {startup_kills} during start-up",
        started.elapsed()
    );
    assert!(acknowledged > cycles as u64, "the load wrote too little");
}

/// Edits one raw record of a stopped server's log, to simulate a torn or
/// damaged write (the key layout is documented on `SledStore`).
fn tamper(data: &Path, position: u64, edit: impl FnOnce(&mut Vec<u8>)) {
    let db = registrar::testing::open_sled(data, registrar::store::sled::DEFAULT_CACHE_BYTES);
    let tree = db.open_tree("log").expect("log tree");
    let mut key = vec![b'e'];
    key.extend_from_slice(&position.to_be_bytes());
    let mut record = tree
        .get(&key)
        .expect("read")
        .expect("the record exists")
        .to_vec();
    edit(&mut record);
    tree.insert(key, record).expect("write");
    db.flush().expect("flush");
}

/// Writes a few records through a server, stops it, and returns the head.
async fn a_few_records(data: &Path, logs: &Path) -> u64 {
    let mut server = spawn(data, logs, 0);
    let channel = server.ready().await;
    let mut envs = pb::environment_service_client::EnvironmentServiceClient::new(channel.clone());
    let env = envs
        .create_environment(authed(pb::CreateEnvironmentRequest {
            name: "e".into(),
            orchestration: pb::Orchestration::Cattle as i32,
            request_id: String::new(),
        }))
        .await
        .expect("create environment")
        .into_inner()
        .environment
        .expect("environment")
        .id;
    let mut reg = pb::registry_service_client::RegistryServiceClient::new(channel);
    for address in ["a.example.com", "b.example.com"] {
        reg.create_registry(authed(pb::CreateRegistryRequest {
            environment_id: env.clone(),
            kind: pb::RegistryKind::Custom as i32,
            address: address.into(),
            email: "ops@example.com".into(),
            username: "u".into(),
            password: "pw".into(),
            ..Default::default()
        }))
        .await
        .expect("create registry");
    }
    server.kill();
    let store = SledStore::open(data).expect("open");
    let head = store.log().head();
    store.close().await.expect("close");
    head
}

/// Starts the server binary on a damaged directory: it must exit, not serve.
fn refused_start(data: &Path, logs: &Path) -> String {
    let mut server = spawn(data, logs, 1);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("child status") {
            break status;
        }
        if started.elapsed() > READY_TIMEOUT {
            server.kill();
            panic!("the server started on a damaged log");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "the server exited successfully");
    server.log_text()
}

#[tokio::test]
async fn a_torn_last_record_stops_the_start_naming_its_position_and_the_way_out() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (data, logs) = (tmp.path().join("data"), tmp.path().to_path_buf());
    let head = a_few_records(&data, &logs).await;
    assert!(head >= 3, "head {head}");
    tamper(&data, head, |record| record.truncate(record.len() / 2));
    let stderr = refused_start(&data, &logs);
    assert!(
        stderr.contains(&format!("event log corrupt at position {head}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("restore the data directory from a backup"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_flipped_byte_in_a_record_stops_the_start_naming_its_position_and_the_way_out() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (data, logs) = (tmp.path().join("data"), tmp.path().to_path_buf());
    let head = a_few_records(&data, &logs).await;
    // A byte inside the second record (an environment's or a registry's event).
    tamper(&data, 2, |record| {
        let i = record.len() / 3;
        record[i] ^= 0x01;
    });
    let stderr = refused_start(&data, &logs);
    assert!(
        stderr.contains("event log corrupt at position 2"),
        "{stderr}"
    );
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(
        stderr.contains("restore the data directory from a backup"),
        "{stderr}"
    );
    assert!(head >= 2);
}
