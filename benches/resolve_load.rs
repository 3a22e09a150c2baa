//! ResolvePull under load, against an empty handler on a bare tonic server.
//!
//! Starts the real `registrar` binary on loopback with two environments
//! (Cattle and Kubernetes) of 50 registries each and a 50-entry whitelist,
//! and a bare tonic server (this benchmark's own executable, started again
//! with `--bare-server`), then drives closed-loop clients for a fixed time
//! per phase:
//!
//! 1. `grpc.health.v1.Health/Check` on the bare tonic server: tonic's
//!    health handler and nothing else (the baseline: what the transport
//!    alone costs on this machine). Same runtime as registrar's where it
//!    matters: tokio's multi-threaded runtime with one worker per core,
//!    TCP_NODELAY, tonic's default HTTP/2 settings; none of registrar's
//!    layers (limits, timeouts, metrics, tracing spans);
//! 2. the same Health/Check on registrar: what its layers cost;
//! 3. ResolvePull allowed, Cattle answer (token check, image parse, default
//!    registry, whitelist, one credential opened, AuthConfig and
//!    X-Registry-Auth);
//! 4. ResolvePull allowed, Kubernetes answer (dockerconfigjson and the
//!    kubelet's CredentialProviderResponse);
//! 5. ResolvePull denied by the whitelist.
//!
//! Every answer is checked (the right decision and, when allowed, the right
//! password), so a fast wrong answer fails the run.
//!
//! `cargo bench --bench resolve_load` (env: `SECONDS` per phase, `CLIENTS`
//! in flight, `CONNECTIONS`; `SERVER_CPU` pins both servers to that CPU).

use std::time::{Duration, Instant};

mod common;

use common::{
    agent_token, channel, create_environment, env_usize, pct, rss_kib, sorted_latencies,
    start_server, with_token,
};
use registrar::pb;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Registries per environment.
const REGISTRIES: usize = 50;

/// What a phase asks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ask {
    Health,
    Cattle,
    Kubernetes,
    Denied,
}

/// Runs `clients` closed-loop callers over `connections` connections for
/// `seconds`; returns the sorted latencies.
async fn phase(
    channels: &[Channel],
    clients: usize,
    seconds: u64,
    ask: Ask,
    tokens: (&str, &str),
) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let ch = channels[c % channels.len()].clone();
        let token = match ask {
            Ask::Kubernetes => tokens.1.to_owned(),
            _ => tokens.0.to_owned(),
        };
        tasks.push(tokio::spawn(async move {
            let mut health = HealthClient::new(ch.clone());
            let mut pull = pb::pull_service_client::PullServiceClient::new(ch);
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                i += clients;
                let n = i % REGISTRIES;
                let started = Instant::now();
                match ask {
                    Ask::Health => {
                        health
                            .check(HealthCheckRequest {
                                service: String::new(),
                            })
                            .await
                            .unwrap();
                    }
                    Ask::Cattle | Ask::Kubernetes | Ask::Denied => {
                        let image = if ask == Ask::Denied {
                            format!("elsewhere.example.org/team/app{n}:1")
                        } else {
                            format!("r{n}.example.com/team/app:{i}")
                        };
                        let r = pull
                            .resolve_pull(with_token(
                                &token,
                                pb::ResolvePullRequest {
                                    min_revision: 0,
                                    environment_id: String::new(),
                                    target: Some(pb::resolve_pull_request::Target::Image(image)),
                                },
                            ))
                            .await
                            .unwrap()
                            .into_inner();
                        check(ask, n, &r);
                    }
                }
                lat.push(started.elapsed());
            }
            lat
        }));
    }
    sorted_latencies(tasks).await
}

/// Panics unless the answer is the one `ask` must get.
fn check(ask: Ask, n: usize, r: &pb::ResolvePullResponse) {
    use pb::resolve_pull_response::Decision;
    match (ask, &r.decision) {
        (Ask::Denied, Some(Decision::Denied(d))) => {
            assert_eq!(d.reason(), pb::DenyReason::NotWhitelisted)
        }
        (Ask::Cattle | Ask::Kubernetes, Some(Decision::Allowed(a))) => {
            let c = a.credential.as_ref().expect("a credential");
            assert_eq!(c.password, format!("p{n}"));
            let shaped = matches!(
                (ask, &a.orchestrator),
                (Ask::Cattle, Some(pb::pull_allowed::Orchestrator::Cattle(_)))
                    | (
                        Ask::Kubernetes,
                        Some(pb::pull_allowed::Orchestrator::Kubernetes(_))
                    )
            );
            assert!(shaped, "{ask:?} answer shaped for its orchestrator");
        }
        other => panic!("{ask:?}: unexpected answer {other:?}"),
    }
}

/// Creates an environment with its registries; returns an agent token of it.
async fn environment(ch: &Channel, admin: &str, orchestration: pb::Orchestration) -> String {
    let name = format!("bench-{}", orchestration.as_str_name());
    let env = create_environment(ch, admin, &name, orchestration).await;
    let mut regs = pb::registry_service_client::RegistryServiceClient::new(ch.clone());
    for n in 0..REGISTRIES {
        regs.create_registry(with_token(
            admin,
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
        .unwrap();
    }
    agent_token(ch, admin, &env).await
}

/// The bare tonic server of the baseline, serving health on `port` until
/// killed.
fn bare_server(port: u16) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let (_reporter, health) = tonic_health::server::health_reporter();
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(health)
                .serve(([127, 0, 0, 1], port).into())
                .await
                .unwrap();
        });
}

/// The bare tonic server as a child process; killed on drop.
struct Bare {
    child: std::process::Child,
    url: String,
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_bare() -> Bare {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = common::pinned(std::env::current_exe().unwrap())
        .args(["--bare-server", &port.to_string()])
        .spawn()
        .unwrap();
    let mut bare = Bare {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    common::wait_serving(&bare.url, &mut bare.child, Duration::from_secs(10)).await;
    bare
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare-server") {
        return bare_server(args[i + 1].parse().unwrap());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let seconds = env_usize("SECONDS", 10) as u64;
    let clients = env_usize("CLIENTS", 32);
    let connections = env_usize("CONNECTIONS", 4).max(1);
    let server = start_server().await;
    let pid = server.child.id();
    let admin = server.token.clone();
    let ch = channel(&server.url).await;

    let cattle = environment(&ch, &admin, pb::Orchestration::Cattle).await;
    let kubernetes = environment(&ch, &admin, pb::Orchestration::Kubernetes).await;
    // A whitelist of 50 entries whose last is the registries' glob: each
    // allowed pull walks all of it, as a long real whitelist would.
    let mut whitelist: Vec<String> = (1..REGISTRIES)
        .map(|n| format!("other{n}.example.net"))
        .collect();
    whitelist.push("*.example.com".to_owned());
    let mut settings = pb::settings_service_client::SettingsServiceClient::new(ch.clone());
    settings
        .update_settings(with_token(
            &admin,
            pb::UpdateSettingsRequest {
                settings: Some(pb::Settings {
                    default_registry: "r0.example.com".into(),
                    whitelist,
                }),
                update_mask: None,
                request_id: String::new(),
            },
        ))
        .await
        .unwrap();

    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(channel(&server.url).await);
    }
    let bare = start_bare().await;
    let mut bare_channels = Vec::new();
    for _ in 0..connections {
        bare_channels.push(channel(&bare.url).await);
    }
    let tokens = (cattle.as_str(), kubernetes.as_str());
    // Warm up every path once.
    phase(&bare_channels, clients, 1, Ask::Health, tokens).await;
    for ask in [Ask::Health, Ask::Cattle, Ask::Kubernetes, Ask::Denied] {
        phase(&channels, clients, 1, ask, tokens).await;
    }
    let rss_start = rss_kib(pid);

    let mut results = vec![(
        "bare tonic, Health/Check (baseline)",
        phase(&bare_channels, clients, seconds, Ask::Health, tokens).await,
    )];
    drop(bare_channels);
    drop(bare);
    let phases = [
        ("registrar, Health/Check", Ask::Health),
        ("ResolvePull, Cattle", Ask::Cattle),
        ("ResolvePull, Kubernetes", Ask::Kubernetes),
        ("ResolvePull, denied", Ask::Denied),
    ];
    for (name, ask) in phases {
        let lat = phase(&channels, clients, seconds, ask, tokens).await;
        results.push((name, lat));
    }
    let rss_end = rss_kib(pid);

    println!(
        "resolve_load: {seconds} s per phase, {clients} clients in flight over {connections} connections, {REGISTRIES} registries per environment"
    );
    let base = &results[0].1;
    let base_rate = base.len() as f64 / seconds as f64;
    for (name, lat) in &results {
        let rate = lat.len() as f64 / seconds as f64;
        println!(
            "{name:<36}: {rate:>8.0} calls/s  p50 {:>6.2} ms  p99 {:>6.2} ms  | vs baseline: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
            pct(lat, 0.5),
            pct(lat, 0.99),
            rate / base_rate,
            pct(lat, 0.5) / pct(base, 0.5),
            pct(lat, 0.99) / pct(base, 0.99),
        );
    }
    println!(
        "server RSS: {} MiB after warm-up, {} MiB at the end",
        rss_start / 1024,
        rss_end / 1024
    );
}
