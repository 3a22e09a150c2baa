//! Several replicas over one PostgreSQL log (feature `e2e`: the tests start
//! a real PostgreSQL): a write through one is seen by another's reads,
//! pulls and watch streams; the first admin token is minted with
//! `admin-token --database-url`; every replica needs the same key.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{custom, Bearer, Clients};
use registrar::config::ServeConfig;
use registrar::pb;
use registrar::server::{mint_admin_token, Error};
use registrar::testing::postgres::TestPostgres;
use registrar::testing::Running;
use secrecy::ExposeSecret as _;

fn random_key() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn replica_config(url: &str, key: &str) -> ServeConfig {
    let mut c = ServeConfig::for_dir("/nonexistent/registrar-data".into());
    c.database_url = Some(url.into());
    c.key_value = Some(key.into());
    c
}

async fn clients(r: &Running, token: &str) -> Clients {
    let ch = tonic::transport::Channel::from_shared(r.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    Clients::over(ch, Bearer::new(Some(token)))
}

/// Asks until `check` holds, for at most five seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: not within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_reaches_the_others_reads_pulls_and_watches() {
    let url = TestPostgres::shared().fresh_database().await;
    let key = random_key();
    let config = replica_config(&url, &key);
    let a = Running::start(config.clone(), Default::default())
        .await
        .unwrap();
    let b = Running::start(config.clone(), Default::default())
        .await
        .unwrap();
    // No replica writes a token file: the first admin token is minted.
    let admin = mint_admin_token(&config).await.unwrap();
    let admin = admin.expose_secret().to_owned();
    let mut on_a = clients(&a, &admin).await;
    let env = on_a.create_env("shared", pb::Orchestration::Cattle).await;
    let agent = on_a.token(pb::Role::Agent, &env).await;
    let mut agent_b = clients(&b, &agent).await;

    // A watch on B, opened before the write on A.
    let mut watch = eventually_watch(&mut agent_b).await;
    let reg = on_a
        .add_registry(custom(&env, "reg.example.com", "alice", "pw-1"))
        .await;
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let m = watch.message().await.unwrap().unwrap();
            if let Some(pb::watch_response::Event::RegistryChanged(r)) = m.event {
                return r;
            }
        }
    })
    .await
    .expect("B's watch sees A's write within 5 s");
    assert_eq!(got.id, reg.id);

    eventually("B hands out A's credential", || {
        let mut c = agent_b.pull.clone();
        let env = env.clone();
        async move {
            let r = resolve(&mut c, &env).await;
            matches!(&r.decision, Some(pb::resolve_pull_response::Decision::Allowed(a))
                if a.credential.as_ref().is_some_and(|c| c.password == "pw-1"))
        }
    })
    .await;

    // Writes go through any replica: deactivate through B, A denies.
    let mut on_b = clients(&b, &admin).await;
    on_b.reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: reg.id.clone(),
            request_id: "deactivate-1".into(),
        })
        .await
        .expect("a write through B");
    let mut agent_a = clients(&a, &agent).await;
    eventually("A denies after B's deactivation", || {
        let mut c = agent_a.pull.clone();
        let env = env.clone();
        async move {
            let r = resolve(&mut c, &env).await;
            matches!(
                r.decision,
                Some(pb::resolve_pull_response::Decision::Denied(_))
            )
        }
    })
    .await;
    // A retry of B's request through A is B's caller's retry: answered
    // from the log, whichever replica took the first call.
    on_a.reg
        .deactivate_registry(pb::DeactivateRegistryRequest {
            id: reg.id.clone(),
            request_id: "deactivate-1".into(),
        })
        .await
        .expect("the retry is answered, not refused as already inactive");
    let _ = agent_a.list(&env).await;

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Resolves the test's image in `env`.
async fn resolve(
    c: &mut pb::pull_service_client::PullServiceClient<common::Authed>,
    env: &str,
) -> pb::ResolvePullResponse {
    c.resolve_pull(pb::ResolvePullRequest {
        min_revision: 0,
        environment_id: env.to_owned(),
        target: Some(pb::resolve_pull_request::Target::Image(
            "reg.example.com/app:1".into(),
        )),
    })
    .await
    .unwrap()
    .into_inner()
}

/// Opens a watch of the agent's environment.
async fn eventually_watch(c: &mut Clients) -> tonic::Streaming<pb::WatchResponse> {
    c.pull
        .watch(pb::WatchRequest::default())
        .await
        .expect("watch")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_needs_the_database_s_key() {
    let url = TestPostgres::shared().fresh_database().await;
    let first = replica_config(&url, &random_key());
    let a = Running::start(first, Default::default()).await.unwrap();
    // Another key: refused, naming both key ids.
    let err = Running::start(replica_config(&url, &random_key()), Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    // No key at all: refused rather than a key of its own made up.
    let mut keyless = replica_config(&url, "");
    keyless.key_value = None;
    let err = Running::start(keyless, Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::KeyRequired), "{err}");
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_read_their_writes_and_every_watcher_sees_every_change_in_order() {
    let url = TestPostgres::shared().fresh_database().await;
    let config = replica_config(&url, &random_key());
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            Running::start(config.clone(), Default::default())
                .await
                .unwrap(),
        );
    }
    let admin = mint_admin_token(&config).await.unwrap();
    let admin = admin.expose_secret().to_owned();
    let mut first = clients(&replicas[0], &admin).await;
    let env = first.create_env("three", pb::Orchestration::Cattle).await;
    let agent = first.token(pb::Role::Agent, &env).await;
    let mut admins = Vec::new();
    let mut watches = Vec::new();
    for r in &replicas {
        admins.push(clients(r, &admin).await);
        watches.push(eventually_watch(&mut clients(r, &agent).await).await);
    }

    // Writes spread over the three, each read back through the next one
    // at its revision: never an older view, never a wait for a poll.
    const WRITES: usize = 30;
    let mut written = Vec::new();
    for i in 0..WRITES {
        let created = admins[i % 3]
            .reg
            .create_registry(custom(&env, &format!("r{i}.example.com"), "u", "pw"))
            .await
            .expect("a write through any replica")
            .into_inner();
        let revision = created.revision;
        let id = created.registry.unwrap().id;
        let read = admins[(i + 1) % 3]
            .reg
            .get_registry(pb::GetRegistryRequest {
                id: id.clone(),
                min_revision: revision,
            })
            .await
            .expect("the next replica reads the write at its revision")
            .into_inner();
        assert!(read.revision >= revision);
        written.push((revision, id));
    }
    written.sort();
    let expected: Vec<String> = written.into_iter().map(|(_, id)| id).collect();

    // Every watcher, on every replica, sees every registry in commit order.
    for (n, watch) in watches.iter_mut().enumerate() {
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while seen.len() < WRITES {
                let m = watch.message().await.unwrap().unwrap();
                if let Some(pb::watch_response::Event::RegistryChanged(r)) = m.event {
                    seen.push(r.id);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("watcher {n} saw {} of {WRITES}", seen.len()));
        assert_eq!(seen, expected, "watcher on replica {n}");
    }
    for r in replicas {
        r.stop().await.unwrap();
    }
}

/// Asks a replica's health service about RegistryService.
async fn registry_service_serving(r: &Running) -> bool {
    let Ok(ch) = tonic::transport::Channel::from_shared(r.url())
        .unwrap()
        .connect()
        .await
    else {
        return false;
    };
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "registrar.v1.RegistryService".into(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_loses_nothing_and_the_replicas_recover_by_themselves() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    // A server of this test's own: it is stopped and started again.
    let pg = Arc::new(TestPostgres::own(Vec::new()));
    let url = pg.fresh_database().await;
    let config = replica_config(&url, &random_key());
    let replicas = [
        Running::start(config.clone(), Default::default())
            .await
            .unwrap(),
        Running::start(config.clone(), Default::default())
            .await
            .unwrap(),
    ];
    let admin = mint_admin_token(&config).await.unwrap();
    let admin = admin.expose_secret().to_owned();
    let mut first = clients(&replicas[0], &admin).await;
    let env = first.create_env("restart", pb::Orchestration::Cattle).await;
    let agent = first.token(pb::Role::Agent, &env).await;
    first
        .add_registry(custom(&env, "reg.example.com", "alice", "pw-1"))
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    // Pullers: every replica answers ResolvePull throughout, outage or not.
    let mut pullers = Vec::new();
    for r in &replicas {
        let mut c = clients(r, &agent).await;
        let (stop, env) = (Arc::clone(&stop), env.clone());
        pullers.push(tokio::spawn(async move {
            let mut answered = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = resolve(&mut c.pull, &env).await;
                assert!(
                    matches!(
                        r.decision,
                        Some(pb::resolve_pull_response::Decision::Allowed(_))
                    ),
                    "{r:?}"
                );
                answered += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            answered
        }));
    }
    // A writer over both replicas: acknowledged writes, and the request ids
    // whose outcome an outage left open.
    let acked = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let open = Arc::new(Mutex::new(Vec::<(usize, pb::CreateRegistryRequest)>::new()));
    let unavailable = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut admins = [
            clients(&replicas[0], &admin).await,
            clients(&replicas[1], &admin).await,
        ];
        let (stop, env, acked, open, unavailable) = (
            Arc::clone(&stop),
            env.clone(),
            Arc::clone(&acked),
            Arc::clone(&open),
            Arc::clone(&unavailable),
        );
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let mut request = custom(&env, &format!("w{i}.example.com"), "u", "pw");
                request.request_id = format!("write-{i}");
                let mut call = tonic::Request::new(request.clone());
                call.set_timeout(Duration::from_secs(15));
                match admins[i % 2].reg.create_registry(call).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        acked
                            .lock()
                            .unwrap()
                            .push((r.revision, r.registry.unwrap().id));
                    }
                    Err(s) => {
                        assert_eq!(
                            s.code(),
                            tonic::Code::Unavailable,
                            "a write while the database is down: {s:?}"
                        );
                        unavailable.store(true, Ordering::Relaxed);
                        open.lock().unwrap().push((i % 2, request));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = acked.lock().unwrap().len();
    assert!(before > 0, "writes went through before the restart");

    {
        let pg = Arc::clone(&pg);
        tokio::task::spawn_blocking(move || pg.stop())
            .await
            .unwrap();
    }
    eventually_within(
        "a write answered UNAVAILABLE",
        Duration::from_secs(15),
        || {
            let unavailable = Arc::clone(&unavailable);
            async move { unavailable.load(Ordering::Relaxed) }
        },
    )
    .await;
    for r in &replicas {
        eventually_within(
            "health reports RegistryService NOT_SERVING",
            Duration::from_secs(10),
            || async { !registry_service_serving(r).await },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let pg = Arc::clone(&pg);
        tokio::task::spawn_blocking(move || pg.start())
            .await
            .unwrap();
    }
    // Within 5 s of the database's return, writes go through both replicas
    // again and health says so, with no restart.
    let back = Instant::now();
    let after = acked.lock().unwrap().len();
    eventually_within("writes go through again", Duration::from_secs(5), || {
        let acked = Arc::clone(&acked);
        async move { acked.lock().unwrap().len() > after + 2 }
    })
    .await;
    for r in &replicas {
        eventually_within(
            "health reports RegistryService SERVING",
            Duration::from_secs(5).saturating_sub(back.elapsed()),
            || async { registry_service_serving(r).await },
        )
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    for p in pullers {
        assert!(p.await.unwrap() > 0);
    }

    // The writes the outage left open are settled by their retry: answered
    // from the log if they were recorded, made now if they were not.
    let open: Vec<_> = std::mem::take(&mut *open.lock().unwrap());
    let mut acked: Vec<(u64, String)> = std::mem::take(&mut *acked.lock().unwrap());
    for (n, request) in open {
        let r = clients(&replicas[1 - n], &admin)
            .await
            .reg
            .create_registry(request)
            .await
            .expect("a retry after the outage")
            .into_inner();
        acked.push((r.revision, r.registry.unwrap().id));
    }
    // No acknowledged write is lost, on either replica.
    let head = acked.iter().map(|(rev, _)| *rev).max().unwrap();
    for r in &replicas {
        let mut c = clients(r, &admin).await;
        let listed: std::collections::HashSet<String> =
            list_all(&mut c, &env, head).await.into_iter().collect();
        for (_, id) in &acked {
            assert!(
                listed.contains(id),
                "registry {id} is missing on {}",
                r.url()
            );
        }
    }
    for r in replicas {
        r.stop().await.unwrap();
    }
}

/// Asks until `check` holds, for at most `limit`.
async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lists every registry id of `env` as of at least `revision`.
async fn list_all(c: &mut Clients, env: &str, revision: u64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .reg
            .list_registries(pb::ListRegistriesRequest {
                environment_id: env.to_owned(),
                page_size: 500,
                page_token,
                min_revision: revision,
            })
            .await
            .expect("list")
            .into_inner();
        ids.extend(page.registries.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// A TCP proxy in front of moto for one replica: it notes when that
/// replica sends a request, so the test sees who asks AWS for tokens.
async fn recording_proxy(
    replica: usize,
    upstream: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<(usize, Instant)>>>,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let log = std::sync::Arc::clone(&log);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if buf[..n].starts_with(b"POST ") {
                                    log.lock().unwrap().push((replica, Instant::now()));
                                }
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_refreshes_ecr_tokens_and_another_takes_over_when_it_dies() {
    use registrar::server::Overrides;
    use registrar::testing::ManualClock;
    use std::sync::{Arc, Mutex};
    const ADDRESS: &str = "123456789012.dkr.ecr.us-west-2.amazonaws.com";
    /// moto's fixed token expiry: 2015-01-01T00:00:00Z.
    const MOTO_EXPIRY: u64 = 1_420_070_400;
    let moto_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _moto = common::moto::Moto::start(moto_port).await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    // Twelve hours before moto's expiry, on one clock all replicas share.
    let clock =
        ManualClock::new(std::time::UNIX_EPOCH + Duration::from_secs(MOTO_EXPIRY - 12 * 3600));
    let url = TestPostgres::shared().fresh_database().await;
    let mut config = replica_config(&url, &random_key());
    config.ecr_poll_ms = 20;
    let mut replicas = Vec::new();
    for n in 0..3 {
        let proxy = recording_proxy(n, moto_port, Arc::clone(&asked)).await;
        let overrides = Overrides {
            ecr_endpoint: Some(format!("http://127.0.0.1:{proxy}")),
            clock: Some(Arc::new(clock.clone())),
            ..Overrides::default()
        };
        replicas.push(Some(
            Running::start(config.clone(), overrides).await.unwrap(),
        ));
    }
    let admin = mint_admin_token(&config).await.unwrap();
    let admin = admin.expose_secret().to_owned();
    let mut c = clients(replicas[0].as_ref().unwrap(), &admin).await;
    let env = c.create_env("ecr", pb::Orchestration::Kubernetes).await;
    let reg = c
        .add_registry(pb::CreateRegistryRequest {
            environment_id: env.clone(),
            kind: pb::RegistryKind::Ecr as i32,
            address: ADDRESS.into(),
            ecr: Some(pb::EcrCredentials {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            }),
            ..Default::default()
        })
        .await;
    let token_of = |c: &mut Clients| {
        let mut reg_client = c.reg.clone();
        let id = reg.id.clone();
        async move {
            reg_client
                .get_registry(pb::GetRegistryRequest {
                    id,
                    min_revision: 0,
                })
                .await
                .unwrap()
                .into_inner()
                .registry
                .unwrap()
                .update_time
                .map_or(0, |t| t.seconds)
        }
    };
    let created = token_of(&mut c).await;
    eventually_within("the first token", Duration::from_secs(10), || {
        let asked = Arc::clone(&asked);
        async move { !asked.lock().unwrap().is_empty() }
    })
    .await;
    // Time passes and tokens fall due several times (at half their life):
    // one replica asks.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(3 * 3600));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let leader = {
        let asked = asked.lock().unwrap();
        let first = asked[0].0;
        assert!(
            asked.iter().all(|(r, _)| *r == first),
            "more than one replica asked AWS: {asked:?}"
        );
        first
    };
    let before = asked.lock().unwrap().len();
    // The leader dies; the token falls due; another replica takes over.
    replicas[leader].take().unwrap().stop().await.unwrap();
    let died = Instant::now();
    // A minute before moto's expiry: past the half life of any token.
    clock.set(std::time::UNIX_EPOCH + Duration::from_secs(MOTO_EXPIRY - 60));
    eventually_within("another replica refreshes", Duration::from_secs(10), || {
        let asked = Arc::clone(&asked);
        async move { asked.lock().unwrap().len() > before }
    })
    .await;
    println!("took over in {:?}", died.elapsed());
    let asked = asked.lock().unwrap().clone();
    let successor = asked[before].0;
    assert_ne!(successor, leader);
    assert!(
        asked[before..].iter().all(|(r, _)| *r == successor),
        "after the takeover, more than one replica asked AWS: {asked:?}"
    );
    let survivor = replicas.iter().flatten().next().unwrap();
    let mut c = clients(survivor, &admin).await;
    eventually_within("the new token is recorded", Duration::from_secs(10), || {
        let fut = token_of(&mut c);
        async move { fut.await > created }
    })
    .await;
    for r in replicas.into_iter().flatten() {
        r.stop().await.unwrap();
    }
}

/// Runs `registrar store copy` as a user would.
fn store_copy(from: &std::path::Path, url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["store", "copy", "--from-data-dir"])
        .arg(from)
        .args(["--to-database-url", url])
        .env_remove("REGISTRAR_DATABASE_URL")
        .output()
        .expect("run registrar store copy")
}

/// What a server answers: every registry, pulls with their credentials,
/// the settings.
async fn answers(admin: &mut Clients, agent: &mut Clients, env: &str) -> String {
    let registries = admin.list(env).await;
    let settings = admin
        .settings
        .get_settings(pb::GetSettingsRequest { min_revision: 0 })
        .await
        .unwrap()
        .into_inner()
        .settings;
    let mut pulls = Vec::new();
    for image in [
        "a.example.com/x:1",
        "b.example.com/y",
        "gone.example.com/z",
        "ubuntu",
    ] {
        let mut r = agent.resolve("", image).await.unwrap();
        r.revision = 0;
        pulls.push(r);
    }
    format!("{registries:?}\n{settings:?}\n{pulls:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_a_sled_installation_into_postgres_intact() {
    let mut server = common::TestServer::start().await;
    let mut admin = server.admin().await;
    let env = admin.create_env("moved", pb::Orchestration::Cattle).await;
    let agent_token = admin.token(pb::Role::Agent, &env).await;
    let mut agent = server.clients_with(Some(&agent_token)).await;
    admin
        .add_registry(custom(&env, "a.example.com", "alice", "pw-a1"))
        .await;
    // A replaced credential (its old data key destroyed), a deactivated
    // registry, a deleted one, settings, and a request id to retry later.
    admin
        .add_registry(custom(&env, "a.example.com", "alice", "pw-a2"))
        .await;
    let mut with_id = custom(&env, "b.example.com", "bob", "pw-b");
    with_id.request_id = "create-b".into();
    let b = admin
        .reg
        .create_registry(with_id.clone())
        .await
        .unwrap()
        .into_inner();
    let gone = admin
        .add_registry(custom(&env, "gone.example.com", "c", "pw-c"))
        .await;
    admin
        .reg
        .delete_registry(pb::DeleteRegistryRequest {
            id: gone.id,
            request_id: String::new(),
        })
        .await
        .unwrap();
    admin.set_settings("a.example.com", &[]).await;
    let mut watch = agent
        .pull
        .watch(pb::WatchRequest {
            send_initial_state: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut resume = String::new();
    while let Some(m) = watch.message().await.unwrap() {
        resume = m.token.clone();
        if matches!(m.event, Some(pb::watch_response::Event::Bookmark(_))) {
            break;
        }
    }
    let before = answers(&mut admin, &mut agent, &env).await;
    let url = TestPostgres::shared().fresh_database().await;

    // A running server's directory is not copied.
    let out = store_copy(&server.data_dir(), &url);
    assert!(!out.status.success(), "copied a running server's directory");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop((admin, agent, watch));
    let key_file = server.config().key_file_path();
    let data_dir = server.data_dir();
    let admin_token = server.admin.clone();
    server.stop().await;

    let out = store_copy(&data_dir, &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("copied and verified"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Once is enough: a database that holds a log is not written over.
    let again = store_copy(&data_dir, &url);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // A replica on the copy, with the server's key, answers as it did.
    let mut config = replica_config(&url, "");
    config.key_value = None;
    config.key_file = Some(key_file);
    let replica = Running::start(config, Default::default()).await.unwrap();
    let mut admin = clients(&replica, &admin_token).await;
    let mut agent = clients(&replica, &agent_token).await;
    assert_eq!(answers(&mut admin, &mut agent, &env).await, before);
    // Request records came along: the retry is answered, not made again.
    let retried = admin
        .reg
        .create_registry(with_id)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.revision, b.revision);
    assert_eq!(retried.registry, b.registry);
    // So did the log's id: the old resume token resumes here.
    let mut resumed = agent
        .pull
        .watch(pb::WatchRequest {
            resume_token: resume,
            ..Default::default()
        })
        .await
        .expect("the sled server's resume token")
        .into_inner();
    admin
        .add_registry(custom(&env, "c.example.com", "c", "pw"))
        .await;
    let next = tokio::time::timeout(Duration::from_secs(5), resumed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&next.event, Some(pb::watch_response::Event::RegistryChanged(r)) if r.address == "c.example.com"),
        "{next:?}"
    );
    replica.stop().await.unwrap();
}

/// Counts the encrypted sessions to database `name`, as the server sees them.
async fn tls_sessions(port: u16, name: &str) -> i64 {
    let admin = format!("postgres://registrar@127.0.0.1:{port}/postgres");
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_the_database_over_tls_and_check_its_certificate() {
    let (ca, cert, key) = common::test_pki("database test CA", &["localhost"]);
    let pg = TestPostgres::own(Vec::new()).with_tls(&cert, &key);
    let url = pg.fresh_database().await;
    let name = url.rsplit('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let (other_ca, _, _) = common::test_pki("database test CA", &["localhost"]);
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, &other_ca).unwrap();
    let by_name = url.replace("127.0.0.1", "localhost");
    let key_value = random_key();

    // verify-full with the CA that signed the certificate, by its name.
    let mut config = replica_config(&format!("{by_name}?sslmode=verify-full"), &key_value);
    config.database_ca = Some(ca_file.clone());
    let replica = Running::start(config.clone(), Default::default())
        .await
        .expect("verify-full against the right CA");
    let admin = mint_admin_token(&config).await.unwrap();
    let mut c = clients(&replica, admin.expose_secret()).await;
    let env = c.create_env("tls", pb::Orchestration::Cattle).await;
    assert!(!env.is_empty());
    assert!(
        tls_sessions(pg.port, &name).await > 0,
        "the replica's sessions are encrypted"
    );
    replica.stop().await.unwrap();

    // Another CA: refused at start, naming the certificate.
    let mut wrong = config.clone();
    wrong.database_ca = Some(other_ca_file);
    let err = Running::start(wrong, Default::default())
        .await
        .expect_err("a certificate another CA signed");
    assert!(err.to_string().contains("certificate"), "{err}");
    // verify-full by an address the certificate does not name: refused.
    let mut by_address = replica_config(&format!("{url}?sslmode=verify-full"), &key_value);
    by_address.database_ca = Some(ca_file.clone());
    let err = Running::start(by_address, Default::default())
        .await
        .expect_err("a certificate for another name");
    assert!(err.to_string().contains("certificate"), "{err}");
    // verify-ca checks the chain only: the address is fine.
    let mut chain_only = replica_config(&format!("{url}?sslmode=verify-ca"), &key_value);
    chain_only.database_ca = Some(ca_file);
    Running::start(chain_only, Default::default())
        .await
        .expect("verify-ca by address")
        .stop()
        .await
        .unwrap();
    // require encrypts without checking, as libpq does.
    Running::start(
        replica_config(&format!("{url}?sslmode=require"), &key_value),
        Default::default(),
    )
    .await
    .expect("require")
    .stop()
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_starting_at_once_mint_no_token_and_admin_token_gives_the_first() {
    let url = TestPostgres::shared().fresh_database().await;
    let key = random_key();
    let config = replica_config(&url, &key);
    let (a, b, c) = tokio::join!(
        Running::start(config.clone(), Default::default()),
        Running::start(config.clone(), Default::default()),
        Running::start(config.clone(), Default::default()),
    );
    let replicas = [a.unwrap(), b.unwrap(), c.unwrap()];
    // The offline command, as an operator runs it: the token on standard
    // output, nothing of it on standard error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
        .args(["admin-token", "--database-url", &url])
        .env("REGISTRAR_KEY", &key)
        .env("RUST_LOG", "debug")
        .output()
        .expect("run registrar admin-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("rgr."), "{token}");
    let secret = token.rsplit('.').next().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(secret),
        "the token's secret is in the command's log"
    );
    // It is the only token: every replica knows it and lists nothing else.
    for r in &replicas {
        let mut c = clients(r, &token).await;
        let listed = c
            .tokens
            .list_tokens(pb::ListTokensRequest::default())
            .await
            .expect("the minted token works on every replica")
            .into_inner()
            .tokens;
        assert_eq!(listed.len(), 1, "{listed:?}");
    }
    for r in replicas {
        r.stop().await.unwrap();
    }
}
