//! Cold start and memory: how long the server takes to serve a large log,
//! against a raw sequential scan of the same sled tree, and how much memory
//! its view of many registries takes.
//!
//! 1. Writes a log in process, through the service's own commands (sealed
//!    credentials, data keys, group commit): `ENVIRONMENTS` environments
//!    (default 1,000) of `REGISTRIES_PER_ENVIRONMENT` registries (default
//!    100), then credential replacements until the log holds `EVENTS`
//!    events (default 1,000,000).
//! 2. Scans the log's sled tree raw (every key and value read, nothing
//!    decoded), twice, and keeps the faster.
//! 3. Starts the release `registrar` binary on it and measures the time
//!    until `grpc.health.v1.Health/Check` answers SERVING; checks that the
//!    view is whole (every registry of the first and last environment
//!    listed, each with its latest credential); reads its resident memory.
//! 4. On the second start, replaces credentials across the log for
//!    `WRITE_SECONDS` (default 10; 0 for none) from 64 callers, on
//!    registries of every environment but the first and the last, and
//!    prints the rate, the server's CPU per write and its memory after:
//!    what a bounded page cache costs a write on a large log.
//! 5. Does the same as 3 on an empty data directory, for the memory a
//!    server takes with nothing in it.
//!
//! `cargo bench --bench cold_start` (env as above; `SERVER_CPU` pins the
//! server). `LOG_DIR=path` keeps the written log (and the ids it holds) in
//! `path` and starts from it on the next run instead of writing it again,
//! whatever the sizes then asked for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{env_usize, rss_kib, with_token};
use registrar::app::{new_id, App};
use registrar::crypto::{Kek, KeySource};
use registrar::domain::access::Principal;
use registrar::domain::address::RegistryKind;
use registrar::domain::command::Command;
use registrar::domain::credential::NewCredential;
use registrar::domain::event::Orchestration;
use registrar::pb;
use registrar::store::{EventLog, SledStore};
use secrecy::SecretString;

/// Commands in flight while the log is written.
const WRITERS: usize = 64;

/// Runs `count` commands made by `make(i)` from `WRITERS` tasks.
async fn run_all(app: &App, count: usize, make: Arc<dyn Fn(usize) -> Command + Send + Sync>) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (app, next, make) = (app.clone(), Arc::clone(&next), Arc::clone(&make));
        tasks.push(tokio::spawn(async move {
            let who = Principal::system();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let command = make(i);
                app.execute(&who, "", &[], || command.clone())
                    .await
                    .unwrap_or_else(|e| panic!("command {i}: {e}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The password of registry `r` after `version` replacements.
fn password(r: usize, version: usize) -> String {
    format!("pw-{r}-{version}")
}

/// Writes the log; returns the environment ids, the registry ids and how
/// many times each registry's credential was replaced.
async fn generate(
    data: &std::path::Path,
    environments: usize,
    per_environment: usize,
    events: usize,
) -> Ids {
    let kek = Kek::load(&KeySource::File(data.with_extension("key")), true).unwrap();
    let store = SledStore::open(data).unwrap();
    let app = App::open(store.log() as Arc<dyn EventLog>, store.keys(), kek, None)
        .await
        .unwrap();
    let started = Instant::now();
    let envs: Arc<Vec<String>> = Arc::new((0..environments).map(|_| new_id()).collect());
    let e = Arc::clone(&envs);
    run_all(
        &app,
        environments,
        Arc::new(move |i| Command::CreateEnvironment {
            environment_id: e[i].clone(),
            name: format!("env-{i}"),
            orchestration: Some(Orchestration::Cattle),
        }),
    )
    .await;
    let registries = environments * per_environment;
    let regs: Arc<Vec<String>> = Arc::new((0..registries).map(|_| new_id()).collect());
    let (e, r) = (Arc::clone(&envs), Arc::clone(&regs));
    run_all(
        &app,
        registries,
        Arc::new(move |i| Command::CreateRegistry {
            environment_id: e[i / per_environment].clone(),
            registry_id: r[i].clone(),
            credential_id: new_id(),
            kind: Some(RegistryKind::Custom),
            address: format!("r{}.example.com", i % per_environment),
            credential: NewCredential {
                email: "ops@example.com".into(),
                username: format!("user-{i}"),
                password: SecretString::from(password(i, 0)),
                expire_time: None,
                ecr: None,
            },
            insecure: false,
            ca_certificate_pem: String::new(),
            verified: None,
        }),
    )
    .await;
    let replacements = events.saturating_sub(environments + registries);
    let r = Arc::clone(&regs);
    run_all(
        &app,
        replacements,
        Arc::new(move |i| {
            let reg = i % r.len();
            Command::UpdateRegistry {
                registry_id: r[reg].clone(),
                credential_id: new_id(),
                address: String::new(),
                email: String::new(),
                username: String::new(),
                password: Some(SecretString::from(password(reg, i / r.len() + 1))),
                insecure: None,
                ca_certificate_pem: None,
                expire_time: None,
                ecr: None,
                verified: None,
            }
        }),
    )
    .await;
    let head = app.log().head();
    let took = started.elapsed();
    println!(
        "wrote {head} events ({environments} environments, {registries} registries, {replacements} credential replacements) in {:.1} s ({:.0} commands/s, {WRITERS} in flight)",
        took.as_secs_f64(),
        head as f64 / took.as_secs_f64()
    );
    assert_eq!(head as usize, environments + registries + replacements);
    app.close().await;
    drop(app);
    store.close().await.unwrap();
    // Replacements went round the registries in order, so registry `r`
    // was replaced this many times.
    let versions = (0..registries)
        .map(|r| replacements / registries + usize::from(r < replacements % registries))
        .collect();
    (envs.to_vec(), regs.to_vec(), versions)
}

/// The ids a log holds: environments, registries, replacements of each.
type Ids = (Vec<String>, Vec<String>, Vec<usize>);

/// Records the ids of the log kept in `dir`, one line per list.
fn write_ids(dir: &std::path::Path, (envs, regs, versions): &Ids) {
    let versions: Vec<String> = versions.iter().map(usize::to_string).collect();
    let text = format!(
        "{}\n{}\n{}\n",
        envs.join(" "),
        regs.join(" "),
        versions.join(" ")
    );
    std::fs::write(dir.join("ids"), text).unwrap();
}

/// Reads the ids of the log kept in `dir`, if one was written there.
fn read_ids(dir: &std::path::Path) -> Option<Ids> {
    let text = std::fs::read_to_string(dir.join("ids")).ok()?;
    let mut lines = text.lines();
    let mut words = || -> Vec<String> {
        let line = lines.next().unwrap_or_default();
        line.split_whitespace().map(str::to_owned).collect()
    };
    let (envs, regs) = (words(), words());
    let versions = words().iter().map(|v| v.parse().unwrap()).collect();
    Some((envs, regs, versions))
}

/// Reads every key and value of the log's tree; returns (records, bytes).
fn raw_scan(data: &std::path::Path) -> (usize, usize, Duration) {
    let started = Instant::now();
    // sled's own default cache (1 GiB), as the baseline has always had.
    let db = registrar::testing::open_sled(data, 1024 * 1024 * 1024);
    let tree = db.open_tree("log").unwrap();
    let (mut records, mut bytes) = (0, 0);
    for item in tree.iter() {
        let (k, v) = item.unwrap();
        records += 1;
        bytes += k.len() + v.len();
    }
    let took = started.elapsed();
    drop(tree);
    drop(db);
    (records, bytes, took)
}

/// A server process on `data`, killed on drop.
struct Serving {
    child: std::process::Child,
    url: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on `data`; returns it and the time until its health
/// check answered SERVING.
async fn serve(data: &std::path::Path) -> (Serving, Duration) {
    let started = Instant::now();
    let (child, url) = common::spawn_server(data);
    let mut serving = Serving { child, url };
    common::wait_serving(&serving.url, &mut serving.child, Duration::from_secs(600)).await;
    (serving, started.elapsed())
}

/// Replaces credentials across the whole log for `seconds` from `WRITERS`
/// callers, each on a connection of its own, on registries of every
/// environment but the first and the last (whose registries the start's
/// checks read); a stride spreads them over the log. Checks every answer;
/// returns the writes acknowledged.
async fn write_across(
    url: &str,
    token: &str,
    envs: &[String],
    per_environment: usize,
    seconds: u64,
) -> usize {
    let inner = envs.len().saturating_sub(2);
    if inner == 0 {
        return 0;
    }
    let slots = inner * per_environment;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let next = Arc::new(AtomicUsize::new(0));
    let envs = Arc::new(envs.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (next, envs, token) = (Arc::clone(&next), Arc::clone(&envs), token.to_owned());
        let ch = common::channel(url).await;
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                // A prime stride visits every slot unless their count is a
                // multiple of it.
                let slot = (i * 7919) % slots;
                let (env, n) = (1 + slot / per_environment, slot % per_environment);
                let address = format!("r{n}.example.com");
                common::replace_credential(
                    &ch,
                    &token,
                    &envs[env],
                    &address,
                    &format!("writer-{i}"),
                )
                .await;
                done += 1;
            }
            done
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap();
    }
    done
}

/// Mints an admin token offline, as an operator would.
fn admin_token(data: &std::path::Path) -> String {
    let out = std::process::Command::new(common::registrar_program())
        .args(["admin-token", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Checks that every registry of `env` is listed with its latest credential
/// version's username; returns how many.
async fn check_environment(url: &str, token: &str, env: &str, first: usize, count: usize) {
    let ch = common::channel(url).await;
    let mut client = pb::registry_service_client::RegistryServiceClient::new(ch);
    let mut seen = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_registries(with_token(
                token,
                pb::ListRegistriesRequest {
                    environment_id: env.to_owned(),
                    page_size: 500,
                    page_token: page_token.clone(),
                    min_revision: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        for r in &page.registries {
            let n: usize = r.address[1..r.address.find('.').unwrap()].parse().unwrap();
            assert_eq!(r.username, format!("user-{}", first + n), "{r:?}");
            seen += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, count, "every registry of {env} is listed");
}

#[tokio::main]
async fn main() {
    let environments = env_usize("ENVIRONMENTS", 1000).max(1);
    let per_environment = env_usize("REGISTRIES_PER_ENVIRONMENT", 100).max(1);
    let events = env_usize("EVENTS", 1_000_000);
    let write_seconds = env_usize("WRITE_SECONDS", 10) as u64;
    let dir = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("LOG_DIR").map(std::path::PathBuf::from);
    let data = kept.as_deref().unwrap_or(dir.path()).join("data");
    let (envs, regs, versions) = match kept.as_deref().and_then(read_ids) {
        Some(ids) => {
            println!("starting from the log kept in {}", data.display());
            ids
        }
        None => {
            let ids = generate(&data, environments, per_environment, events).await;
            if let Some(kept) = &kept {
                write_ids(kept, &ids);
            }
            ids
        }
    };
    let per_environment = regs.len() / envs.len();

    let scans: Vec<_> = (0..2).map(|_| raw_scan(&data)).collect();
    let scan = scans.iter().map(|s| s.2).min().unwrap();
    let (records, bytes, _) = scans[0];
    println!(
        "raw scan of the log tree: {records} records, {} MiB, {:.2} s / {:.2} s (the faster is the baseline)",
        bytes / (1024 * 1024),
        scans[0].2.as_secs_f64(),
        scans[1].2.as_secs_f64()
    );

    let token = admin_token(&data);
    let mut starts = Vec::new();
    let mut rss = 0;
    for run in 1..=2 {
        let (server, took) = serve(&data).await;
        // Whole: the first and the last environment, every registry.
        check_environment(&server.url, &token, &envs[0], 0, per_environment).await;
        let last = envs.len() - 1;
        check_environment(
            &server.url,
            &token,
            &envs[last],
            last * per_environment,
            per_environment,
        )
        .await;
        // The latest credential of each registry of the first environment
        // is the one handed out.
        let ch = common::channel(&server.url).await;
        let agent = common::agent_token(&ch, &token, &envs[0]).await;
        let mut pull = pb::pull_service_client::PullServiceClient::new(ch);
        for (n, version) in versions.iter().enumerate().take(per_environment) {
            let answer = pull
                .resolve_pull(with_token(
                    &agent,
                    pb::ResolvePullRequest {
                        environment_id: String::new(),
                        min_revision: 0,
                        target: Some(pb::resolve_pull_request::Target::Image(format!(
                            "r{n}.example.com/app:1"
                        ))),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            let Some(pb::resolve_pull_response::Decision::Allowed(a)) = answer.decision else {
                panic!("r{n}: {answer:?}");
            };
            assert_eq!(a.credential.unwrap().password, password(n, *version));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss = rss_kib(server.child.id());
        println!(
            "start {run}: serving after {:.2} s ({:.2}x the raw scan), RSS {} MiB",
            took.as_secs_f64(),
            took.as_secs_f64() / scan.as_secs_f64(),
            rss / 1024
        );
        starts.push(took);
        if run == 2 && write_seconds > 0 {
            let cpu = common::cpu_seconds(Some(server.child.id()));
            let done =
                write_across(&server.url, &token, &envs, per_environment, write_seconds).await;
            let cpu = common::cpu_seconds(Some(server.child.id())) - cpu;
            println!(
                "credential writes across the log ({WRITERS} callers, {write_seconds} s): {:.0} /s, server CPU {:.0} µs per write, RSS after {} MiB",
                done as f64 / write_seconds as f64,
                cpu * 1e6 / done.max(1) as f64,
                rss_kib(server.child.id()) / 1024
            );
        }
    }

    let empty = dir.path().join("empty");
    let (server, _) = serve(&empty).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_empty = rss_kib(server.child.id());
    drop(server);
    println!(
        "memory: {} registries in {} environments: {} MiB resident, {} MiB empty; {:.0} bytes per registry over the empty server ({:.0} in all)",
        regs.len(),
        envs.len(),
        rss / 1024,
        rss_empty / 1024,
        (rss.saturating_sub(rss_empty) * 1024) as f64 / regs.len() as f64,
        (rss * 1024) as f64 / regs.len() as f64,
    );
}
