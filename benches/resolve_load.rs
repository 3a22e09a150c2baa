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
//! Every answer is checked: each of a phase's 50 calls is sent once before
//! the load and its answer decoded and checked (the right decision and,
//! when allowed, the right password and orchestrator shape); under load the
//! generator sends pre-encoded requests and compares each answer's bytes
//! with the checked answer's, so a fast wrong answer fails the run and the
//! generator's own core goes to the transport, not to protobuf.
//!
//! Each phase prints the CPU time per call of the server and of the load
//! generator (from `/proc`): with both on one core each, the throughput
//! ratio is only the server's cost while the generator's core has room.
//!
//! `cargo bench --bench resolve_load` (env: `SECONDS` per phase, `CLIENTS`
//! in flight, `CONNECTIONS`; `SERVER_CPU` pins both servers to that CPU).

use std::time::{Duration, Instant};

mod common;

use common::{
    agent_token, channel, cpu_seconds, create_environment, env_usize, pct, rss_kib,
    sorted_latencies, start_server, with_token,
};
use prost::Message as _;
use registrar::pb;
use registrar::testing::raw::Call;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

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

/// The calls of a phase, one per registry, with the answer each must get:
/// every call is sent once, its answer decoded and checked, and its bytes
/// kept, so that the load only compares bytes.
type Calls = Vec<(Call, bytes::Bytes)>;

/// Makes the calls of `ask` and checks their answers on `ch`.
async fn calls(ch: &Channel, ask: Ask, tokens: (&str, &str)) -> Calls {
    let mut grpc = Grpc::new(ch.clone());
    let mut out = Vec::new();
    for n in 0..REGISTRIES {
        let call = match ask {
            Ask::Health => Call::new(
                "/grpc.health.v1.Health/Check",
                None,
                &HealthCheckRequest {
                    service: String::new(),
                },
            ),
            Ask::Cattle | Ask::Kubernetes | Ask::Denied => {
                let image = if ask == Ask::Denied {
                    format!("elsewhere.example.org/team/app{n}:1")
                } else {
                    format!("r{n}.example.com/team/app:{n}")
                };
                let token = if ask == Ask::Kubernetes {
                    tokens.1
                } else {
                    tokens.0
                };
                Call::new(
                    "/registrar.v1.PullService/ResolvePull",
                    Some(token),
                    &pb::ResolvePullRequest {
                        min_revision: 0,
                        environment_id: String::new(),
                        target: Some(pb::resolve_pull_request::Target::Image(image)),
                    },
                )
            }
        };
        let answer = call.send(&mut grpc).await.unwrap();
        if ask == Ask::Health {
            let r = HealthCheckResponse::decode(answer.clone()).unwrap();
            assert_eq!(r.status(), ServingStatus::Serving);
        } else {
            check(
                ask,
                n,
                &pb::ResolvePullResponse::decode(answer.clone()).unwrap(),
            );
        }
        out.push((call, answer));
    }
    out
}

/// Runs `clients` closed-loop callers over `connections` connections for
/// `seconds`; returns the sorted latencies. Each answer must be the
/// checked answer of its call, byte for byte.
async fn phase(channels: &[Channel], clients: usize, seconds: u64, calls: &Calls) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let calls = std::sync::Arc::new(calls.clone());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut grpc = Grpc::new(channels[c % channels.len()].clone());
        let calls = std::sync::Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                i += clients;
                let (call, expected) = &calls[i % calls.len()];
                let started = Instant::now();
                let answer = call.send(&mut grpc).await.unwrap();
                assert!(
                    answer == expected,
                    "{}: an answer other than the checked one",
                    call.path
                );
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
    let bare_calls = calls(&bare_channels[0], Ask::Health, tokens).await;
    let mut asked = Vec::new();
    for ask in [Ask::Health, Ask::Cattle, Ask::Kubernetes, Ask::Denied] {
        asked.push(calls(&channels[0], ask, tokens).await);
    }
    // Warm up every path.
    phase(&bare_channels, clients, 1, &bare_calls).await;
    for calls in &asked {
        phase(&channels, clients, 1, calls).await;
    }
    let rss_start = rss_kib(pid);

    let bare_pid = bare.child.id();
    let before = (cpu_seconds(Some(bare_pid)), cpu_seconds(None));
    let lat = phase(&bare_channels, clients, seconds, &bare_calls).await;
    let cpu = (
        cpu_seconds(Some(bare_pid)) - before.0,
        cpu_seconds(None) - before.1,
    );
    let mut results = vec![("bare tonic, Health/Check (baseline)", lat, cpu)];
    drop(bare_channels);
    drop(bare);
    let phases = [
        "registrar, Health/Check",
        "ResolvePull, Cattle",
        "ResolvePull, Kubernetes",
        "ResolvePull, denied",
    ];
    for (name, calls) in phases.into_iter().zip(&asked) {
        let before = (cpu_seconds(Some(pid)), cpu_seconds(None));
        let lat = phase(&channels, clients, seconds, calls).await;
        let cpu = (
            cpu_seconds(Some(pid)) - before.0,
            cpu_seconds(None) - before.1,
        );
        results.push((name, lat, cpu));
    }
    let rss_end = rss_kib(pid);

    println!(
        "resolve_load: {seconds} s per phase, {clients} clients in flight over {connections} connections, {REGISTRIES} registries per environment"
    );
    let base = &results[0].1;
    let base_rate = base.len() as f64 / seconds as f64;
    let per_call = |(cpu, lat): (f64, &Vec<Duration>)| cpu * 1e6 / lat.len().max(1) as f64;
    let base_server = per_call((results[0].2 .0, base));
    for (name, lat, cpu) in &results {
        let rate = lat.len() as f64 / seconds as f64;
        let server = per_call((cpu.0, lat));
        println!(
            "{name:<36}: {rate:>8.0} calls/s  p50 {:>6.2} ms  p99 {:>6.2} ms  | vs baseline: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
            pct(lat, 0.5),
            pct(lat, 0.99),
            rate / base_rate,
            pct(lat, 0.5) / pct(base, 0.5),
            pct(lat, 0.99) / pct(base, 0.99),
        );
        println!(
            "{:<36}  CPU per call: server {server:.1} us ({:.2}x the baseline's), load generator {:.1} us",
            "",
            server / base_server,
            per_call((cpu.1, lat)),
        );
    }
    println!(
        "server RSS: {} MiB after warm-up, {} MiB at the end",
        rss_start / 1024,
        rss_end / 1024
    );
}
