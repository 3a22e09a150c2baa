//! Durable writes against etcd 3.4's `Put`, in one run, on loopback.
//!
//! Starts etcd (Debian's `etcd-server`) and the release `registrar` binary
//! on a fresh sled data directory, then, for each concurrency in `WRITERS`,
//! drives closed-loop writers (each on its own connection) for `SECONDS`
//! per phase:
//!
//! 1. etcd `Put` of a fresh key (the reference: acknowledged once its raft
//!    entry is in etcd's fsynced WAL);
//! 2. `CreateEnvironment` of a fresh name (acknowledged once its commit is
//!    durable and applied);
//! 3. credential writes: `CreateRegistry` at one of 50 addresses of one
//!    environment, each replacing that registry's credential (a new data
//!    key sealed, wrapped and stored with the commit).
//!
//! Every answer is checked (the environment's name; the registry's address,
//! user name and a new credential id), so a fast wrong answer fails the run.
//! Each phase also prints the CPU time per write of the server under test
//! and of the load generator (from `/proc`).
//!
//! `cargo bench --bench write_load` (env: `SECONDS` per phase, `WRITERS` a
//! comma-separated list of concurrencies; `SERVER_CPU` pins registrar and
//! etcd to that CPU, e.g. `taskset -c 1 env SERVER_CPU=0 cargo bench ...`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{
    channel, cpu_seconds, create_environment, env_usize, pct, replace_credential, sorted_latencies,
    start_server, with_token,
};
use registrar::pb;
use tonic::transport::Channel;

/// Registries the credential writers replace credentials on.
const REGISTRIES: usize = 50;

/// What a phase writes.
#[derive(Clone, Copy, Debug)]
enum Write {
    EtcdPut,
    CreateEnvironment,
    Credential,
}

/// Runs `writers` closed-loop writers for `seconds`, each on a connection
/// of its own; returns the sorted latencies.
async fn phase(
    url: &str,
    token: &str,
    env: &str,
    what: Write,
    writers: usize,
    seconds: u64,
) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // Credential ids seen, across writers: each write must make a new one.
    let credentials = Arc::new(Mutex::new(HashSet::new()));
    let run = rand::random::<u32>();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let ch = channel(url).await;
        let (token, env, credentials) = (token.to_owned(), env.to_owned(), credentials.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let name = format!("r{run:x}-w{w}-{i}");
                let started = Instant::now();
                match what {
                    Write::EtcdPut => etcd_put(&ch, &name).await,
                    Write::CreateEnvironment => create(&ch, &token, &name).await,
                    Write::Credential => {
                        let id = replace_credential(
                            &ch,
                            &token,
                            &env,
                            &address((w + i) % REGISTRIES),
                            &name,
                        )
                        .await;
                        assert!(
                            credentials.lock().unwrap().insert(id),
                            "a credential write answered a credential id seen before"
                        );
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

async fn etcd_put(ch: &Channel, name: &str) {
    let r = common::etcd::put(ch, format!("/bench/{name}").into_bytes(), name.into())
        .await
        .expect("an etcd Put");
    assert!(r.header.expect("a header").revision > 0);
}

async fn create(ch: &Channel, token: &str, name: &str) {
    let r = pb::environment_service_client::EnvironmentServiceClient::new(ch.clone())
        .create_environment(with_token(
            token,
            pb::CreateEnvironmentRequest {
                name: name.to_owned(),
                orchestration: pb::Orchestration::Cattle as i32,
                request_id: String::new(),
            },
        ))
        .await
        .expect("CreateEnvironment")
        .into_inner();
    let env = r.environment.expect("an environment");
    assert_eq!(env.name, name);
    assert!(!env.id.is_empty() && r.revision > 0);
}

fn address(n: usize) -> String {
    format!("r{n}.example.com")
}

fn line(name: &str, lat: &[Duration], seconds: u64, base: Option<&[Duration]>) {
    let rate = lat.len() as f64 / seconds as f64;
    let vs = base.map_or(String::new(), |b| {
        format!(
            "  | vs etcd: {:.2}x, p50 {:.2}x, p99 {:.2}x",
            lat.len() as f64 / b.len() as f64,
            pct(lat, 0.5) / pct(b, 0.5),
            pct(lat, 0.99) / pct(b, 0.99)
        )
    });
    println!(
        "{name:<30}: {rate:>8.0} /s  p50 {:>6.2} ms  p99 {:>6.2} ms{vs}",
        pct(lat, 0.5),
        pct(lat, 0.99),
    );
}

#[tokio::main]
async fn main() {
    let seconds = env_usize("SECONDS", 10) as u64;
    let writers: Vec<usize> = std::env::var("WRITERS")
        .unwrap_or_else(|_| "16,64".into())
        .split(',')
        .map(|w| {
            w.trim()
                .parse()
                .expect("WRITERS: a comma-separated list of counts")
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let etcd = common::etcd::start_etcd(dir.path()).await;
    let server = start_server().await;
    let admin = server.token.clone();
    let ch = channel(&server.url).await;
    let env = create_environment(&ch, &admin, "credentials", pb::Orchestration::Cattle).await;
    for n in 0..REGISTRIES {
        replace_credential(&ch, &admin, &env, &address(n), "setup").await;
    }
    println!(
        "write_load: {seconds} s per phase; server CPU {}",
        std::env::var("SERVER_CPU").unwrap_or_else(|_| "not pinned".into())
    );
    for &w in &writers {
        let mut results = Vec::new();
        for what in [Write::EtcdPut, Write::CreateEnvironment, Write::Credential] {
            let url = match what {
                Write::EtcdPut => &etcd.url,
                _ => &server.url,
            };
            phase(url, &admin, &env, what, w, 1).await;
            let pid = match what {
                Write::EtcdPut => etcd.pid(),
                _ => server.child.id(),
            };
            let before = (cpu_seconds(Some(pid)), cpu_seconds(None));
            let lat = phase(url, &admin, &env, what, w, seconds).await;
            let cpu = (
                cpu_seconds(Some(pid)) - before.0,
                cpu_seconds(None) - before.1,
            );
            results.push((lat, cpu));
        }
        println!("{w} writers:");
        let names = [
            "  etcd 3.4 Put (reference)",
            "  CreateEnvironment",
            "  credential (CreateRegistry)",
        ];
        for (i, (name, (lat, cpu))) in names.iter().zip(&results).enumerate() {
            let base = (i > 0).then(|| results[0].0.as_slice());
            line(name, lat, seconds, base);
            let per_write = |cpu: f64| cpu * 1e6 / lat.len().max(1) as f64;
            println!(
                "{:<30}  CPU per write: server {:.0} us, load generator {:.0} us",
                "",
                per_write(cpu.0),
                per_write(cpu.1)
            );
        }
    }
}
