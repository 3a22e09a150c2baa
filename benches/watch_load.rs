//! Watch under load: writer latency with and without stalled watchers.
//!
//! Starts the real `registrar` binary on loopback, measures write latency
//! alone (the baseline), then again while 500 watchers are connected, half of
//! which never read. Checks that every reading watcher receives every change
//! in order (the first reader to receive a change decodes and checks it, the
//! others must receive the same bytes), notes how long a change took to
//! reach a reader, prints the CPU per write of the server and of this
//! generator, and samples the server's resident memory throughout.
//!
//! Three phases of `CHANGES` writes each: no watcher (the baseline), half of
//! the watchers connected and never reading, then the other half reading too.
//! A fourth, once those are gone: `OTHER_WATCHERS` (default 500) reading
//! watchers of `OTHER_ENVIRONMENTS` (default 50) other environments, which
//! must receive nothing but bookmarks: what writes cost when the watchers
//! are of environments the writes do not touch.
//!
//! `cargo bench --bench watch_load` (env: `WATCHERS`, `CHANGES`, `WRITERS`,
//! `OTHER_WATCHERS`, `OTHER_ENVIRONMENTS`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

mod common;

use bytes::Bytes;
use common::{
    agent_token, channel, cpu_seconds, create_environment, env_usize, pct, rss_kib,
    sorted_latencies, start_server, with_token,
};
use prost::Message as _;
use registrar::pb;
use registrar::testing::raw::Call;
use tonic::client::Grpc;
use tonic::transport::Channel;

/// When each write of a phase was sent, in nanoseconds from `epoch`.
struct Sent {
    epoch: Instant,
    at: Vec<AtomicU64>,
}

impl Sent {
    fn new(count: usize) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            at: (0..count).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Where a phase writes: the server, its admin token, the environment and
/// its registries, and how many writers run at once.
struct Writes {
    url: String,
    token: String,
    env: String,
    registries: Vec<String>,
    writers: usize,
    /// The server's process, whose CPU time each phase reads.
    pid: u32,
}

/// A phase's writes: their sorted latencies, the seconds they took, and
/// the CPU seconds (server, generator) from the phase's start.
struct Phase {
    latencies: Vec<Duration>,
    secs: f64,
    cpu_from: (f64, f64),
}

impl Writes {
    /// CPU seconds used so far by the server and by this generator.
    fn cpu(&self) -> (f64, f64) {
        (cpu_seconds(Some(self.pid)), cpu_seconds(None))
    }

    /// Runs a phase of writes, one per slot of `sent`.
    async fn phase(&self, sent: Arc<Sent>) -> Phase {
        let cpu_from = self.cpu();
        let started = Instant::now();
        let latencies = write(self, sent).await;
        Phase {
            latencies,
            secs: started.elapsed().as_secs_f64(),
            cpu_from,
        }
    }

    /// The CPU seconds (server, generator) used since the phase started.
    fn spent(&self, phase: &Phase) -> (f64, f64) {
        let now = self.cpu();
        (now.0 - phase.cpu_from.0, now.1 - phase.cpu_from.1)
    }
}

/// Writes one change per slot of `sent` from the target's writers, noting
/// when each was sent (write `i` sets the username `u{i}`); returns sorted
/// latencies.
async fn write(target: &Writes, sent: Arc<Sent>) -> Vec<Duration> {
    let count = sent.at.len();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..target.writers {
        let (url, token, env, regs, next, sent) = (
            target.url.clone(),
            target.token.clone(),
            target.env.clone(),
            target.registries.clone(),
            next.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut client =
                pb::registry_service_client::RegistryServiceClient::new(channel(&url).await);
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return lat;
                }
                // Each change replaces a credential: the heaviest common write.
                let reg = &regs[i % regs.len()];
                let started = Instant::now();
                sent.at[i].store(sent.now(), Ordering::Relaxed);
                client
                    .create_registry(with_token(
                        &token,
                        pb::CreateRegistryRequest {
                            environment_id: env.clone(),
                            kind: pb::RegistryKind::Custom as i32,
                            address: reg.clone(),
                            email: "ops@example.com".into(),
                            username: format!("u{i}"),
                            password: format!("p{i}"),
                            ..Default::default()
                        },
                    ))
                    .await
                    .unwrap();
                lat.push(started.elapsed());
            }
        }));
    }
    sorted_latencies(tasks).await
}

type WatchClient = pb::pull_service_client::PullServiceClient<Channel>;

/// Opens a watch on its own connection, as each agent has its own.
async fn open_watch(
    url: &str,
    token: &str,
    env: &str,
) -> (WatchClient, tonic::Streaming<pb::WatchResponse>) {
    let mut client = pb::pull_service_client::PullServiceClient::new(channel(url).await);
    let stream = client
        .watch(with_token(token, watch_request(env)))
        .await
        .unwrap()
        .into_inner();
    (client, stream)
}

fn watch_request(env: &str) -> pb::WatchRequest {
    pb::WatchRequest {
        min_revision: 0,
        environment_id: env.to_owned(),
        resume_token: String::new(),
        send_initial_state: false,
    }
}

/// The changes of the reading phase, in order, each as the first reader to
/// receive it decoded and checked it: every other reader must receive the
/// same bytes (the server encodes a change once for all its watchers), so
/// a wrong, missing, repeated or reordered message fails the run while the
/// generator's core goes to the transport rather than to protobuf.
struct Reference {
    changes: Vec<OnceLock<(u64, Bytes)>>,
    registries: Vec<String>,
}

impl Reference {
    /// Checks the `i`th change a reader received, after one at `previous`;
    /// returns its position. `None` for a bookmark, which readers skip.
    fn check(&self, i: usize, previous: u64, message: &Bytes) -> Option<u64> {
        if let Some((position, bytes)) = self.changes[i].get() {
            if bytes == message {
                return Some(*position);
            }
        }
        let m = pb::WatchResponse::decode(message.clone()).expect("a WatchResponse");
        let r = match m.event {
            Some(pb::watch_response::Event::Bookmark(_)) => return None,
            Some(pb::watch_response::Event::RegistryChanged(r)) => r,
            other => panic!("change {i}: expected a registry change, got {other:?}"),
        };
        assert!(self.registries.contains(&r.address), "{}", r.address);
        assert!(r.username.starts_with('u'), "{}", r.username);
        let position = position_of(&m.token);
        assert!(
            position > previous,
            "change {i} at {position} after {previous}: out of order"
        );
        let (p, bytes) = self.changes[i].get_or_init(|| (position, message.clone()));
        assert_eq!(
            (*p, bytes),
            (position, message),
            "change {i} differs between readers"
        );
        Some(position)
    }
}

/// The log position a resume token names (`v1:<log>:<position>`, base64url).
fn position_of(token: &str) -> u64 {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .expect("a token");
    let text = String::from_utf8(text).unwrap();
    text.rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect("a position")
}

#[tokio::main]
async fn main() {
    let watchers = env_usize("WATCHERS", 500);
    let changes = env_usize("CHANGES", 10_000);
    let writers = env_usize("WRITERS", 16);
    let server = start_server().await;
    let pid = server.child.id();
    let token = server.token.clone();
    let ch = channel(&server.url).await;
    let env = create_environment(&ch, &token, "bench", pb::Orchestration::Cattle).await;
    let registries: Vec<String> = (0..50).map(|i| format!("r{i}.example.com")).collect();

    let target = Writes {
        url: server.url.clone(),
        token: token.clone(),
        env: env.clone(),
        registries: registries.clone(),
        writers,
        pid,
    };

    // Warm up, then the baseline: the same writes with no watcher connected.
    target.phase(Sent::new(500)).await;
    let rss_start = rss_kib(pid);
    let baseline = target.phase(Sent::new(changes)).await;
    let baseline_cpu = target.spent(&baseline);

    // Every watcher is an agent with its own token, as on real hosts.
    let mut agent_tokens = Vec::new();
    for _ in 0..watchers {
        agent_tokens.push(agent_token(&ch, &token, &env).await);
    }

    // Phase 2: the stalled half connects and never reads.
    let mut stalled = Vec::new();
    for agent in &agent_tokens[..watchers / 2] {
        stalled.push(open_watch(&server.url, agent, &env).await);
    }
    let rss_stalled = rss_kib(pid);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_stalled));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let with_stalled = target.phase(Sent::new(changes)).await;
    let stalled_cpu = target.spent(&with_stalled);
    // The stalled watchers' windows are full by now: what they hold.
    let rss_stalled_full = rss_kib(pid);

    // Phase 3: the reading half joins; every reader must see every change.
    // One of them also notes when each change arrived.
    let reference = Arc::new(Reference {
        changes: (0..changes).map(|_| OnceLock::new()).collect(),
        registries: registries.clone(),
    });
    let sent = Sent::new(changes);
    let mut readers = Vec::new();
    for (n, agent) in agent_tokens[watchers / 2..].iter().enumerate() {
        let mut grpc = Grpc::new(channel(&server.url).await);
        let call = Call::new(
            "/registrar.v1.PullService/Watch",
            Some(agent),
            &watch_request(&env),
        );
        let mut stream = call.stream(&mut grpc).await.unwrap();
        let (reference, sent) = (reference.clone(), sent.clone());
        readers.push(tokio::spawn(async move {
            let _grpc = grpc;
            let mut delays = Vec::new();
            let mut previous = 0;
            let mut got = 0usize;
            while got < changes {
                let m = stream.message().await.unwrap().expect("open");
                let Some(position) = reference.check(got, previous, &m) else {
                    continue;
                };
                if n == 0 {
                    let arrived = sent.now();
                    let r = pb::WatchResponse::decode(m).unwrap();
                    let Some(pb::watch_response::Event::RegistryChanged(r)) = r.event else {
                        unreachable!("checked")
                    };
                    let i: usize = r.username[1..].parse().unwrap();
                    let at = sent.at[i].load(Ordering::Relaxed);
                    delays.push(Duration::from_nanos(arrived.saturating_sub(at)));
                }
                previous = position;
                got += 1;
            }
            (got, delays)
        }));
    }
    eprintln!("watch_load: the reading phase starts");
    let with_all = target.phase(sent).await;
    let mut complete = 0;
    let mut delays = Vec::new();
    for r in readers {
        let (got, d) = r.await.unwrap();
        if got == changes {
            complete += 1;
        }
        delays.extend(d);
    }
    delays.sort();
    // Until every reader has every change: the fan-out's whole cost.
    let all_cpu = target.spent(&with_all);
    sampler.abort();
    let rss_end = rss_kib(pid);
    drop(stalled);

    // Phase 4: readers of other environments only.
    let others = env_usize("OTHER_WATCHERS", 500);
    let other_envs = env_usize("OTHER_ENVIRONMENTS", 50).max(1);
    let mut environments = Vec::new();
    for i in 0..other_envs {
        let name = format!("other-{i}");
        environments.push(create_environment(&ch, &token, &name, pb::Orchestration::Cattle).await);
    }
    let mut elsewhere = Vec::new();
    for i in 0..others {
        let other = &environments[i % other_envs];
        let agent = agent_token(&ch, &token, other).await;
        let mut grpc = Grpc::new(channel(&server.url).await);
        let call = Call::new(
            "/registrar.v1.PullService/Watch",
            Some(&agent),
            &watch_request(other),
        );
        let mut stream = call.stream(&mut grpc).await.unwrap();
        elsewhere.push(tokio::spawn(async move {
            let _grpc = grpc;
            let mut bookmarks = 0usize;
            while let Some(m) = stream.message().await.unwrap() {
                let m = pb::WatchResponse::decode(m).unwrap();
                let Some(pb::watch_response::Event::Bookmark(_)) = m.event else {
                    panic!("a watcher of another environment received {m:?}");
                };
                bookmarks += 1;
            }
            bookmarks
        }));
    }
    let with_others = target.phase(Sent::new(changes)).await;
    let others_cpu = target.spent(&with_others);
    for w in &elsewhere {
        assert!(!w.is_finished(), "a watcher of another environment ended");
    }
    for w in elsewhere {
        w.abort();
    }

    let line = |name: &str, phase: &Phase, cpu: (f64, f64)| {
        let (lat, base) = (&phase.latencies, &baseline.latencies);
        println!(
            "{name:<28}: {:>7.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  | vs baseline: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x  | CPU per write: server {:.0} us, generator {:.0} us",
            changes as f64 / phase.secs,
            pct(lat, 0.5),
            pct(lat, 0.99),
            baseline.secs / phase.secs,
            pct(lat, 0.5) / pct(base, 0.5),
            pct(lat, 0.99) / pct(base, 0.99),
            cpu.0 * 1e6 / changes as f64,
            cpu.1 * 1e6 / changes as f64,
        )
    };
    println!(
        "watch_load: {changes} changes per phase, {writers} writers, {} stalled and {} reading watchers",
        watchers / 2,
        watchers.div_ceil(2)
    );
    line("no watchers (baseline)", &baseline, baseline_cpu);
    line("stalled watchers", &with_stalled, stalled_cpu);
    line("stalled + reading watchers", &with_all, all_cpu);
    line(
        &format!("{others} elsewhere ({other_envs} envs)"),
        &with_others,
        others_cpu,
    );
    println!(
        "readers: {complete}/{} received all {changes} changes in order; a change reached a reader {:.2} ms (p50) / {:.2} ms (p99) after its write was sent",
        watchers.div_ceil(2),
        pct(&delays, 0.5),
        pct(&delays, 0.99),
    );
    println!(
        "server RSS: {} MiB before watchers, {} MiB with the stalled ones, {} MiB after their phase ({} KiB per stalled watcher), peak {} MiB, {} MiB at end",
        rss_start / 1024,
        rss_stalled / 1024,
        rss_stalled_full / 1024,
        rss_stalled_full.saturating_sub(rss_start) / (watchers as u64 / 2).max(1),
        peak.load(Ordering::Relaxed) / 1024,
        rss_end / 1024
    );
    assert_eq!(
        complete,
        watchers.div_ceil(2),
        "every reading watcher got every change"
    );
}
