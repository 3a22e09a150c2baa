//! Watch under load: writer latency with and without stalled watchers.
//!
//! Starts the real `registrar` binary on loopback, measures write latency
//! alone (the baseline), then again while 500 watchers are connected, half of
//! which never read. Checks that every reading watcher receives every change
//! in order, and samples the server's resident memory throughout.
//!
//! Three phases of `CHANGES` writes each: no watcher (the baseline), half of
//! the watchers connected and never reading, then the other half reading too.
//!
//! `cargo bench --bench watch_load` (env: `WATCHERS`, `CHANGES`, `WRITERS`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{
    agent_token, channel, create_environment, env_usize, pct, rss_kib, sorted_latencies,
    start_server, with_token,
};
use registrar::pb;
use tonic::transport::Channel;

/// Writes `count` changes from `writers` tasks; returns sorted latencies.
async fn write(
    url: &str,
    token: &str,
    env: &str,
    registries: &[String],
    count: usize,
    writers: usize,
) -> Vec<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (url, token, env, regs, next) = (
            url.to_owned(),
            token.to_owned(),
            env.to_owned(),
            registries.to_vec(),
            next.clone(),
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
        .watch(with_token(
            token,
            pb::WatchRequest {
                min_revision: 0,
                environment_id: env.to_owned(),
                resume_token: String::new(),
                send_initial_state: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    (client, stream)
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

    // Warm up, then the baseline: the same writes with no watcher connected.
    write(&server.url, &token, &env, &registries, 500, writers).await;
    let rss_start = rss_kib(pid);
    let started = Instant::now();
    let baseline = write(&server.url, &token, &env, &registries, changes, writers).await;
    let baseline_secs = started.elapsed().as_secs_f64();

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
    let started = Instant::now();
    let with_stalled = write(&server.url, &token, &env, &registries, changes, writers).await;
    let stalled_secs = started.elapsed().as_secs_f64();

    // Phase 3: the reading half joins; every reader must see every change.
    let mut readers = Vec::new();
    for agent in &agent_tokens[watchers / 2..] {
        let (client, mut stream) = open_watch(&server.url, agent, &env).await;
        readers.push(tokio::spawn(async move {
            let _client = client;
            let mut got = 0usize;
            let mut last = String::new();
            while got < changes {
                let m = stream.message().await.unwrap().expect("open");
                if let Some(pb::watch_response::Event::RegistryChanged(_)) = m.event {
                    // Each change has its own position, hence its own token.
                    assert_ne!(m.token, last);
                    last = m.token;
                    got += 1;
                }
            }
            got
        }));
    }
    let started = Instant::now();
    let with_all = write(&server.url, &token, &env, &registries, changes, writers).await;
    let all_secs = started.elapsed().as_secs_f64();
    let mut complete = 0;
    for r in readers {
        if r.await.unwrap() == changes {
            complete += 1;
        }
    }
    sampler.abort();
    let rss_end = rss_kib(pid);
    drop(stalled);

    let line = |name: &str, lat: &[Duration], secs: f64| {
        println!(
            "{name:<28}: {:>7.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  | vs baseline: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
            changes as f64 / secs,
            pct(lat, 0.5),
            pct(lat, 0.99),
            baseline_secs / secs,
            pct(lat, 0.5) / pct(&baseline, 0.5),
            pct(lat, 0.99) / pct(&baseline, 0.99),
        )
    };
    println!(
        "watch_load: {changes} changes per phase, {writers} writers, {} stalled and {} reading watchers",
        watchers / 2,
        watchers.div_ceil(2)
    );
    line("no watchers (baseline)", &baseline, baseline_secs);
    line("stalled watchers", &with_stalled, stalled_secs);
    line("stalled + reading watchers", &with_all, all_secs);
    println!(
        "readers: {complete}/{} received all {changes} changes in order",
        watchers.div_ceil(2)
    );
    println!(
        "server RSS: {} MiB before watchers, {} MiB with the stalled ones, peak {} MiB, {} MiB at end",
        rss_start / 1024,
        rss_stalled / 1024,
        peak.load(Ordering::Relaxed) / 1024,
        rss_end / 1024
    );
    assert_eq!(
        complete,
        watchers.div_ceil(2),
        "every reading watcher got every change"
    );
}
