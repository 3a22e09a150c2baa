//! Replicas on PostgreSQL against the embedded log and against etcd, in one
//! run, on loopback:
//!
//! 1. durable writes (CreateEnvironment, each acknowledged after its commit
//!    is durable) by `WRITERS` concurrent callers for `SECONDS`: one server
//!    on sled, one replica on PostgreSQL, and etcd 3.4's Put of a key of the
//!    same size as the reference (Debian's `etcd-server`, started here);
//! 2. ResolvePull (allowed, Cattle) over 1, 2 and 3 replicas of one
//!    database, `CLIENTS` callers spread over them;
//! 3. replication lag: a write acknowledged by replica A until a watcher on
//!    replica B receives it, `LAG_WRITES` writes one after the other.
//!
//! Every answer is checked (a write's environment, a pull's password, the
//! watched registry), so a fast wrong answer fails the run.
//!
//! `cargo bench --bench replicas_load` (env: `SECONDS`, `WRITERS`,
//! `CLIENTS`, `LAG_WRITES`). Needs Debian's `postgresql` and `etcd-server`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{
    agent_token, channel, create_environment, env_usize, pct, sorted_latencies, with_token,
};
use registrar::pb;
use registrar::testing::postgres::TestPostgres;
use tonic::transport::Channel;

const ADMIN: &str = "rgr.bench-admin.0123456789abcdef0123456789abcdef";
const REGISTRIES: usize = 50;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `registrar serve` with `env`; returns it and its URL once it answers.
async fn serve(extra: &[(&str, String)], args: &[&str]) -> (Process, String) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_registrar"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("REGISTRAR_ADMIN_TOKEN", ADMIN)
        .env("REGISTRAR_MAX_REGISTRIES_PER_ENVIRONMENT", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        command.env(k, v);
    }
    let child = Process(command.spawn().expect("the registrar binary"));
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..600 {
        if let Ok(ch) = Channel::from_shared(url.clone()).unwrap().connect().await {
            let mut s = pb::settings_service_client::SettingsServiceClient::new(ch);
            if s.get_settings(with_token(
                ADMIN,
                pb::GetSettingsRequest { min_revision: 0 },
            ))
            .await
            .is_ok()
            {
                return (child, url);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("registrar did not start");
}

/// What a write phase writes.
#[derive(Clone, Copy)]
enum Write {
    Registrar,
    Etcd,
}

/// `writers` closed-loop callers for `seconds`, each on its own
/// connection; returns sorted latencies.
async fn writes(url: &str, what: Write, writers: usize, seconds: u64) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let ch = channel(url).await;
        tasks.push(tokio::spawn(async move {
            let mut envs =
                pb::environment_service_client::EnvironmentServiceClient::new(ch.clone());
            let mut lat = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let name = format!("w{w}-{i}");
                let started = Instant::now();
                match what {
                    Write::Registrar => {
                        let env = envs
                            .create_environment(with_token(
                                ADMIN,
                                pb::CreateEnvironmentRequest {
                                    name: name.clone(),
                                    orchestration: pb::Orchestration::Cattle as i32,
                                    request_id: String::new(),
                                },
                            ))
                            .await
                            .expect("a write")
                            .into_inner();
                        assert_eq!(env.environment.expect("an environment").name, name);
                        assert!(env.revision > 0);
                    }
                    Write::Etcd => {
                        let r = common::etcd::put(
                            &ch,
                            format!("/bench/{name}").into_bytes(),
                            name.into_bytes(),
                        )
                        .await
                        .expect("a put");
                        assert!(r.header.expect("a header").revision > 0);
                    }
                }
                lat.push(started.elapsed());
                i += 1;
            }
            lat
        }));
    }
    sorted_latencies(tasks).await
}

/// ResolvePull by `clients` callers spread over `urls` for `seconds`.
async fn pulls(urls: &[String], token: &str, clients: usize, seconds: u64) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let ch = channel(&urls[c % urls.len()]).await;
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut pull = pb::pull_service_client::PullServiceClient::new(ch);
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                i += clients;
                let n = i % REGISTRIES;
                let started = Instant::now();
                let r = pull
                    .resolve_pull(with_token(
                        &token,
                        pb::ResolvePullRequest {
                            environment_id: String::new(),
                            target: Some(pb::resolve_pull_request::Target::Image(format!(
                                "r{n}.example.com/team/app:{i}"
                            ))),
                            min_revision: 0,
                        },
                    ))
                    .await
                    .expect("a pull")
                    .into_inner();
                match &r.decision {
                    Some(pb::resolve_pull_response::Decision::Allowed(a)) => {
                        assert_eq!(
                            a.credential.as_ref().expect("a credential").password,
                            format!("p{n}")
                        );
                    }
                    other => panic!("not allowed: {other:?}"),
                }
                lat.push(started.elapsed());
            }
            lat
        }));
    }
    sorted_latencies(tasks).await
}

/// Writes through `a` one after the other and times each until a watcher
/// on `b` has it (0 when the watcher had it before A's answer arrived).
async fn lag(a: &str, b: &str, env: &str, agent: &str, writes: usize) -> Vec<Duration> {
    let mut watch = pb::pull_service_client::PullServiceClient::new(channel(b).await)
        .watch(with_token(
            agent,
            pb::WatchRequest {
                environment_id: String::new(),
                resume_token: String::new(),
                send_initial_state: false,
                min_revision: 0,
            },
        ))
        .await
        .expect("a watch on B")
        .into_inner();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(m)) = watch.message().await {
            if let Some(pb::watch_response::Event::RegistryChanged(r)) = m.event {
                if tx.send((r.address, Instant::now())).is_err() {
                    return;
                }
            }
        }
    });
    let mut regs = pb::registry_service_client::RegistryServiceClient::new(channel(a).await);
    let mut out = Vec::with_capacity(writes);
    for i in 0..writes {
        let address = format!("lag{i}.example.com");
        regs.create_registry(with_token(
            ADMIN,
            pb::CreateRegistryRequest {
                environment_id: env.to_owned(),
                kind: pb::RegistryKind::Custom as i32,
                address: address.clone(),
                email: "ops@example.com".into(),
                username: "u".into(),
                password: "p".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("a write on A");
        let acked = Instant::now();
        let (got, at) = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("B's watcher within 10 s")
            .expect("B's watch open");
        assert_eq!(got, address, "B's watcher sees A's writes in order");
        out.push(at.saturating_duration_since(acked));
    }
    out.sort();
    out
}

fn line(name: &str, lat: &[Duration], seconds: u64, base: Option<&[Duration]>) {
    let rate = lat.len() as f64 / seconds as f64;
    let vs = base.map_or(String::new(), |b| {
        let base_rate = b.len() as f64 / seconds as f64;
        format!(
            "  | vs etcd: throughput {:.2}x, p99 {:.2}x",
            rate / base_rate,
            pct(lat, 0.99) / pct(b, 0.99)
        )
    });
    println!(
        "{name:<34}: {rate:>8.0} /s  p50 {:>7.2} ms  p99 {:>7.2} ms{vs}",
        pct(lat, 0.5),
        pct(lat, 0.99),
    );
}

#[tokio::main]
async fn main() {
    let seconds = env_usize("SECONDS", 10) as u64;
    let writers = env_usize("WRITERS", 64);
    let clients = env_usize("CLIENTS", 32);
    let lag_writes = env_usize("LAG_WRITES", 500);
    let dir = tempfile::tempdir().unwrap();
    let pg = TestPostgres::own(Vec::new());
    let key = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    };

    // 1. Durable writes: etcd, sled, PostgreSQL.
    let etcd = common::etcd::start_etcd(dir.path()).await;
    let etcd_url = etcd.url.clone();
    writes(&etcd_url, Write::Etcd, writers, 1).await;
    let etcd_lat = writes(&etcd_url, Write::Etcd, writers, seconds).await;
    drop(etcd);
    let data = dir.path().join("sled");
    let (sled, sled_url) = serve(&[], &["--data-dir", &data.display().to_string()]).await;
    writes(&sled_url, Write::Registrar, writers, 1).await;
    let sled_lat = writes(&sled_url, Write::Registrar, writers, seconds).await;
    drop(sled);
    let db = pg.fresh_database().await;
    let replica_env = [
        ("REGISTRAR_DATABASE_URL", db.clone()),
        ("REGISTRAR_KEY", key.clone()),
    ];
    let (one, one_url) = serve(&replica_env, &[]).await;
    writes(&one_url, Write::Registrar, writers, 1).await;
    let pg_lat = writes(&one_url, Write::Registrar, writers, seconds).await;
    drop(one);
    println!("replicas_load: {seconds} s per phase, {writers} writers, {clients} pull clients, {lag_writes} lag writes");
    line("etcd 3.4 Put (reference)", &etcd_lat, seconds, None);
    line(
        "CreateEnvironment, sled",
        &sled_lat,
        seconds,
        Some(&etcd_lat),
    );
    line(
        "CreateEnvironment, PostgreSQL",
        &pg_lat,
        seconds,
        Some(&etcd_lat),
    );

    // 2. ResolvePull over 1, 2 and 3 replicas of one database.
    let db = pg.fresh_database().await;
    let replica_env = [
        ("REGISTRAR_DATABASE_URL", db.clone()),
        ("REGISTRAR_KEY", key.clone()),
    ];
    let mut replicas = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..3 {
        let (p, url) = serve(&replica_env, &[]).await;
        replicas.push(p);
        urls.push(url);
    }
    let ch = channel(&urls[0]).await;
    let env = create_environment(&ch, ADMIN, "bench", pb::Orchestration::Cattle).await;
    let mut regs = pb::registry_service_client::RegistryServiceClient::new(ch.clone());
    let mut last = 0;
    for n in 0..REGISTRIES {
        last = regs
            .create_registry(with_token(
                ADMIN,
                pb::CreateRegistryRequest {
                    environment_id: env.clone(),
                    kind: pb::RegistryKind::Custom as i32,
                    address: format!("r{n}.example.com"),
                    email: "ops@example.com".into(),
                    username: format!("u{n}"),
                    password: format!("p{n}"),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .revision;
    }
    let agent = agent_token(&ch, ADMIN, &env).await;
    // Every replica has the registries before the clock starts.
    for url in &urls {
        let mut r = pb::registry_service_client::RegistryServiceClient::new(channel(url).await);
        r.list_registries(with_token(
            ADMIN,
            pb::ListRegistriesRequest {
                environment_id: env.clone(),
                page_size: 1,
                page_token: String::new(),
                min_revision: last,
            },
        ))
        .await
        .unwrap();
    }
    pulls(&urls, &agent, clients, 1).await;
    let mut pull_results = Vec::new();
    for k in 1..=3 {
        pull_results.push((k, pulls(&urls[..k], &agent, clients, seconds).await));
    }
    let base = pull_results[0].1.len() as f64;
    for (k, lat) in &pull_results {
        line(
            &format!("ResolvePull over {k} replica(s)"),
            lat,
            seconds,
            None,
        );
        println!(
            "{:<34}  {:.2}x the throughput of one replica",
            "",
            lat.len() as f64 / base
        );
    }

    // 3. Replication lag, A to B.
    let lag = lag(&urls[0], &urls[1], &env, &agent, lag_writes).await;
    println!(
        "replication lag A -> B watcher     : p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms over {} writes",
        pct(&lag, 0.5),
        pct(&lag, 0.99),
        pct(&lag, 1.0),
        lag.len()
    );
    drop(replicas);
    pg.stop();
}
