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
    c.database_url = Some(url.to_owned());
    c.key_value = Some(key.to_owned());
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
