//! The watch stream's parts: its batches, its cursor's stops, its pacer.

use std::sync::{Arc, Mutex};

use secrecy::SecretString;

use super::open::{pace, Opened, PACE_PER_STREAM};
use super::*;
use crate::app::new_id;
use crate::app::Item;
use crate::crypto::{Kek, KeySource};
use crate::domain::access::Principal;
use crate::domain::address::RegistryKind;
use crate::domain::command::Command;
use crate::domain::credential::NewCredential;
use crate::domain::event::Orchestration;
use crate::store::{EventLog, SledStore};

const PASSWORD: &str = "Never-In-A-Watch-7";

async fn open(dir: &std::path::Path) -> (App, SledStore) {
    let kek = Kek::load(&KeySource::File(dir.with_extension("key")), true).unwrap();
    let store = SledStore::open(dir).unwrap();
    let app = App::open(store.log() as Arc<dyn EventLog>, store.keys(), kek, None)
        .await
        .unwrap();
    (app, store)
}

/// Creates a Cattle environment as the system; returns who and its id.
async fn environment(app: &App) -> (Principal, String) {
    let admin = Principal::system();
    let env = new_id();
    app.execute(&admin, "", &[], || Command::CreateEnvironment {
        environment_id: env.clone(),
        name: "prod".into(),
        orchestration: Some(Orchestration::Cattle),
    })
    .await
    .unwrap();
    (admin, env)
}

/// Reads the cursor up to what the projection applied.
async fn drain(app: &App, cursor: &mut Cursor) -> Vec<Item> {
    let head = app.projection().position();
    let mut all = Vec::new();
    while cursor.position() < head {
        all.extend(cursor.next().await.unwrap());
    }
    all
}

#[tokio::test]
async fn a_batch_takes_messages_up_to_its_bytes_and_one_more() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, store) = open(&tmp.path().join("data")).await;
    // Messages of about 1 KiB each.
    let change = Change::RegistryRemoved {
        id: "x".repeat(1000),
        address: "reg.example.com".into(),
    };
    let mut batch = Batch::default();
    let mut taken = 0;
    for position in 1.. {
        taken += 1;
        let item = ItemRef::Own {
            position,
            change: &change,
        };
        if !batch.take(&app, item, "env") {
            break;
        }
        assert!(taken < 1000, "the batch never filled");
    }
    let one = batch.messages[0].1 .0.len();
    assert_eq!(taken, QUEUE_BYTES.div_ceil(one + PER_MESSAGE), "{one}");
    assert!(batch.bytes >= QUEUE_BYTES);
    assert!(batch.bytes < QUEUE_BYTES + one + PER_MESSAGE);
    // Each message comes out whole, in order, with its position.
    for position in 1..=taken as u64 {
        let (p, m) = batch.pop_message().unwrap();
        assert_eq!(p, position);
        let decoded = pb::WatchResponse::decode(m.0).unwrap();
        assert_eq!(decoded.token, app.token(position));
    }
    assert!(batch.pop_message().is_none());
    assert_eq!(batch.bytes, 0);
    // The end of the environment ends the batch with a status.
    assert!(!batch.take(
        &app,
        ItemRef::Own {
            position: 99,
            change: &Change::EnvironmentDeleted
        },
        "env"
    ));
    assert_eq!(batch.end.unwrap().code(), tonic::Code::NotFound);
    app.close().await;
    drop(app);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_cursor_stops_before_the_first_change_not_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, store) = open(&tmp.path().join("data")).await;
    let (admin, env) = environment(&app).await;
    let mut cursor = app.watch(&admin, &env, "", false).unwrap().cursor;
    for name in ["a", "b", "c"] {
        app.execute(&admin, "", &[], || Command::UpdateSettings {
            default_registry: Some(format!("{name}.example.com")),
            whitelist: None,
        })
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    cursor
        .next_recent(|item| {
            seen.push(item.position());
            false
        })
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(cursor.position(), seen[0], "stopped at the change taken");
    cursor
        .next_recent(|item| {
            seen.push(item.position());
            true
        })
        .unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(cursor.position(), app.projection().position());
    drop(cursor);
    app.close().await;
    drop(app);
    store.close().await.unwrap();
}

/// Counts the times a task was woken.
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Opens a stream of `env` for an agent whose credential is a client
/// certificate (not a token of the log, so it stays valid) and polls it
/// once, at the head, with a waker that counts its wake-ups; returns the
/// stream, the count, the waker and the sender that would close it.
fn waiting_stream(
    app: &App,
    env: &str,
) -> (
    WatchStream,
    Arc<Wakes>,
    std::task::Waker,
    tokio::sync::watch::Sender<bool>,
) {
    use tokio_stream::Stream as _;
    let agent = Principal {
        token_id: "cert:agent".into(),
        role: crate::domain::event::Role::Agent,
        environment_id: Some(env.to_owned()),
    };
    let start = app.watch(&agent, env, "", false).unwrap();
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut stream = OpenWatches::default()
        .open(
            app,
            agent,
            start.cursor,
            None,
            WatchSettings::default(),
            closing,
        )
        .unwrap();
    let wakes = Arc::new(Wakes(std::sync::atomic::AtomicUsize::new(0)));
    let waker = std::task::Waker::from(Arc::clone(&wakes));
    // At the head: the stream waits for it to move.
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut stream).poll_next(&mut cx).is_pending());
    (stream, wakes, waker, closing_tx)
}

#[tokio::test]
async fn a_stream_the_transport_stops_asking_is_woken_at_most_once_more() {
    use tokio_stream::Stream as _;
    let tmp = tempfile::tempdir().unwrap();
    let (app, store) = open(&tmp.path().join("data")).await;
    let (admin, env) = environment(&app).await;
    let (mut stream, wakes, waker, _closing) = waiting_stream(&app, &env);
    let mut cx = Context::from_waker(&waker);
    // The client stops reading: HTTP/2 no longer asks the stream, whatever
    // changes. One wake-up, then none for the 19 changes after.
    for n in 0..20 {
        app.execute(&admin, "", &[], || Command::UpdateSettings {
            default_registry: Some(format!("r{n}.example.com")),
            whitelist: None,
        })
        .await
        .unwrap();
    }
    app.projection().wait_for(app.projection().position()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    // Asked again, it sends the changes in order.
    let mut positions = Vec::new();
    while let Poll::Ready(Some(m)) = Pin::new(&mut stream).poll_next(&mut cx) {
        let m = pb::WatchResponse::decode(m.unwrap().0).unwrap();
        assert!(matches!(
            m.event,
            Some(pb::watch_response::Event::SettingsChanged(_))
        ));
        positions.push(m.token);
    }
    assert_eq!(positions.len(), 20);
    drop(stream);
    app.close().await;
    drop(app);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_stream_is_not_woken_by_other_environments_changes() {
    use tokio_stream::Stream as _;
    let tmp = tempfile::tempdir().unwrap();
    let (app, store) = open(&tmp.path().join("data")).await;
    let (admin, env) = environment(&app).await;
    let (mut stream, wakes, waker, _closing) = waiting_stream(&app, &env);
    let mut cx = Context::from_waker(&waker);
    // Twenty other environments are created: no wake-up.
    for _ in 0..20 {
        environment(&app).await;
    }
    app.projection().wait_for(app.projection().position()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    // A change of its own environment wakes it, and is the one it sends.
    let at = app.projection().position();
    app.execute(&admin, "", &[], || Command::DeleteEnvironment {
        environment_id: env.clone(),
    })
    .await
    .unwrap();
    app.projection().wait_for(at + 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    let Poll::Ready(Some(Err(status))) = Pin::new(&mut stream).poll_next(&mut cx) else {
        panic!("the stream ends with its environment");
    };
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    drop(stream);
    app.close().await;
    drop(app);
    store.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn watchers_wake_at_once_after_a_quiet_spell_then_once_per_pace() {
    let (applied_tx, applied) = tokio::sync::watch::channel(0u64);
    let open = Arc::new(Opened::default());
    let mut head = open.wakers.lock().unwrap().subscribe("e", 0);
    // 100 open streams: 4 ms between rounds, under a 10 ms most.
    open.count.store(100, Ordering::Relaxed);
    let pacer = tokio::spawn(pace(
        (applied, 0),
        |_, _| None,
        Arc::downgrade(&open),
        Duration::from_millis(10),
    ));
    applied_tx.send_replace(1);
    head.changed().await.unwrap();
    assert_eq!(*head.borrow_and_update(), 1);
    let woken = tokio::time::Instant::now();
    // Changes right after wait for the pace, then leave together.
    applied_tx.send_replace(2);
    applied_tx.send_replace(3);
    head.changed().await.unwrap();
    assert_eq!(*head.borrow_and_update(), 3);
    assert_eq!(woken.elapsed(), PACE_PER_STREAM * 100);
    // After a quiet spell the next change wakes them at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let quiet = tokio::time::Instant::now();
    applied_tx.send_replace(4);
    head.changed().await.unwrap();
    assert_eq!(quiet.elapsed(), Duration::ZERO);
    // 1,000 streams: the most the pace may be.
    open.count.store(1000, Ordering::Relaxed);
    applied_tx.send_replace(5);
    head.changed().await.unwrap();
    let woken = tokio::time::Instant::now();
    applied_tx.send_replace(6);
    head.changed().await.unwrap();
    assert_eq!(woken.elapsed(), Duration::from_millis(10));
    // The projection closing ends the pacer, and so the streams, and those
    // opened after.
    drop(applied_tx);
    pacer.await.unwrap();
    assert!(head.changed().await.is_err());
    let mut late = open.wakers.lock().unwrap().subscribe("e", 6);
    assert!(late.changed().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_round_wakes_the_streams_of_the_environments_that_changed() {
    let (applied_tx, applied) = tokio::sync::watch::channel(0u64);
    let open = Arc::new(Opened::default());
    let (mut a, mut b) = {
        let mut wakers = open.wakers.lock().unwrap();
        (wakers.subscribe("a", 0), wakers.subscribe("b", 0))
    };
    let mut a2 = open.wakers.lock().unwrap().subscribe("a", 0);
    // Up to 2, a change of "a"; at 3, one for every environment. Each
    // round names the records after the last one's, the first those after
    // the position the pacer started from, though 1 came before it ran.
    applied_tx.send_replace(1);
    let rounds = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&rounds);
    let pacer = tokio::spawn(pace(
        (applied, 0),
        move |after, to| {
            seen.lock().unwrap().push((after, to));
            (to < 3).then(|| ["a".to_owned()].into())
        },
        Arc::downgrade(&open),
        Duration::ZERO,
    ));
    a.changed().await.unwrap();
    a2.changed().await.unwrap();
    assert_eq!((*a.borrow_and_update(), *a2.borrow_and_update()), (1, 1));
    assert!(!b.has_changed().unwrap(), "b had no change");
    applied_tx.send_replace(3);
    b.changed().await.unwrap();
    a.changed().await.unwrap();
    assert_eq!((*a.borrow_and_update(), *b.borrow_and_update()), (3, 3));
    drop(applied_tx);
    pacer.await.unwrap();
    assert_eq!(*rounds.lock().unwrap(), vec![(0, 1), (1, 3)]);
}

#[tokio::test]
async fn a_change_is_encoded_once_for_every_watcher_and_reads_as_the_log_folds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (app, store) = open(&dir).await;
    let (admin, env) = environment(&app).await;
    let before = app.projection().position();
    let mut first = app.watch(&admin, &env, "", false).unwrap().cursor;
    let mut second = app.watch(&admin, &env, "", false).unwrap().cursor;
    app.execute(&admin, "", &[], || Command::CreateRegistry {
        environment_id: env.clone(),
        registry_id: new_id(),
        credential_id: new_id(),
        kind: Some(RegistryKind::Custom),
        address: "reg.example.com".into(),
        credential: NewCredential {
            email: "a@example.com".into(),
            username: "alice".into(),
            password: SecretString::from(PASSWORD.to_owned()),
            expire_time: None,
            ecr: None,
        },
        insecure: false,
        ca_certificate_pem: String::new(),
        verified: None,
    })
    .await
    .unwrap();
    app.execute(&admin, "", &[], || Command::UpdateSettings {
        default_registry: Some("reg.example.com".into()),
        whitelist: None,
    })
    .await
    .unwrap();

    let a = drain(&app, &mut first).await;
    let b = drain(&app, &mut second).await;
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(a.iter().all(|i| matches!(i, Item::Shared(_))), "{a:?}");
    let shared: Vec<_> = a
        .iter()
        .map(|i| encoded(&app, i.as_ref(), &env).unwrap())
        .collect();
    for (i, item) in b.iter().enumerate() {
        let again = encoded(&app, item.as_ref(), &env).unwrap();
        assert_eq!(again, shared[i]);
        assert_eq!(
            again.0.as_ptr(),
            shared[i].0.as_ptr(),
            "the second watcher sends the first one's bytes"
        );
    }
    let decoded = pb::WatchResponse::decode(shared[0].0.clone()).unwrap();
    let Some(pb::watch_response::Event::RegistryChanged(r)) = decoded.event else {
        panic!("{decoded:?}");
    };
    assert_eq!(r.address, "reg.example.com");
    assert_eq!(r.username, "alice");
    assert_eq!(decoded.token, app.token(a[0].position()));
    assert!(!String::from_utf8_lossy(&shared[0].0).contains(PASSWORD));
    let token = app.token(before);
    drop((first, second));
    app.close().await;
    drop(app);
    store.close().await.unwrap();

    // Reopened, the window is empty: a resumed cursor folds the log
    // itself, and sends the same messages.
    let (app, store) = open(&dir).await;
    let mut resumed = app.watch(&admin, &env, &token, false).unwrap().cursor;
    let own = drain(&app, &mut resumed).await;
    assert_eq!(own.len(), 2, "{own:?}");
    for (i, item) in own.iter().enumerate() {
        assert!(matches!(item, Item::Own { .. }), "{item:?}");
        assert_eq!(encoded(&app, item.as_ref(), &env).unwrap(), shared[i]);
    }
    drop(resumed);
    app.close().await;
    drop(app);
    store.close().await.unwrap();
}
