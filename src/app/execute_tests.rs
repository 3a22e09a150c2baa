//! Tests of `execute` against the sled store's fault hooks: outcomes a
//! caller never learned, and request ids scoped to their caller.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::crypto::Kek;
use crate::domain::access::Principal;
use crate::domain::address::RegistryKind;
use crate::domain::command::Command;
use crate::domain::credential::NewCredential;
use crate::domain::event::Orchestration;
use crate::domain::event::Role;
use crate::domain::resolve::Target;
use crate::store::EventLog;
use crate::store::{SledLog, SledStore};

struct Fixture {
    app: App,
    log: Arc<SledLog>,
    store: Option<SledStore>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let log = store.log();
    let app = App::open(
        Arc::clone(&log) as Arc<dyn EventLog>,
        store.keys(),
        Kek::generate(),
        None,
    )
    .await
    .unwrap();
    Fixture {
        app,
        log,
        store: Some(store),
        _dir: dir,
    }
}

fn admin() -> Principal {
    Principal {
        token_id: "admin-1".into(),
        role: Role::Admin,
        environment_id: None,
    }
}

fn create_registry(env: &str, credential_id: &str, password: &str) -> Command {
    Command::CreateRegistry {
        environment_id: env.into(),
        registry_id: new_id(),
        credential_id: credential_id.into(),
        kind: Some(RegistryKind::Custom),
        address: "reg.example.com".into(),
        credential: NewCredential {
            email: "a@example.com".into(),
            username: "alice".into(),
            password: SecretString::from(password.to_owned()),
            expire_time: None,
            ecr: None,
        },
        insecure: false,
        ca_certificate_pem: String::new(),
        verified: None,
    }
}

async fn environment(app: &App) -> String {
    let id = new_id();
    app.execute(&admin(), "", &[], || Command::CreateEnvironment {
        environment_id: id.clone(),
        name: "prod".into(),
        orchestration: Some(Orchestration::Cattle),
    })
    .await
    .unwrap();
    id
}

async fn pulled_password(app: &App, env: &str) -> String {
    let answer = app
        .resolve_pull(&admin(), env, Target::Image("reg.example.com/app:1"))
        .await
        .unwrap();
    match answer.outcome {
        PullOutcome::Allowed {
            credential: Some(c),
            ..
        } => c.password.expose_secret().to_owned(),
        other => panic!("expected a credential, got {other:?}"),
    }
}

#[tokio::test]
async fn a_write_whose_flush_failed_is_usable_after_its_retry() {
    let f = fixture().await;
    let env = environment(&f.app).await;
    f.app
        .execute(&admin(), "", &[], || {
            create_registry(&env, "c-old", "old-pass")
        })
        .await
        .unwrap();
    // The batch is applied but its flush fails: the outcome is unknown.
    f.log.fail_next_flush();
    let err = f
        .app
        .execute(&admin(), "x", b"fp", || {
            create_registry(&env, "c-new", "new-pass")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StorageFull), "{err}");
    // The retry finds the commit and answers it; its data key came with it.
    let view = f
        .app
        .execute(&admin(), "x", b"fp", || {
            create_registry(&env, "c-other", "new-pass")
        })
        .await
        .unwrap()
        .view;
    let View::Registry(reg) = view else {
        panic!("expected a registry, got {view:?}");
    };
    assert_eq!(reg.credential.credential_id, "c-new");
    assert_eq!(pulled_password(&f.app, &env).await, "new-pass");
    // The replaced credential's key went with the same commit.
    let keys = f.store.as_ref().unwrap().keys();
    assert_eq!(keys.get("c-old").await.unwrap(), None);
    assert!(keys.get("c-new").await.unwrap().is_some());
    f.app.close().await;
    f.store.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn a_request_id_belongs_to_the_caller_that_used_it() {
    let f = fixture().await;
    let env = environment(&f.app).await;
    let other_admin = Principal {
        token_id: "admin-2".into(),
        ..admin()
    };
    f.app
        .execute(&admin(), "shared", b"fp", || {
            create_registry(&env, "c-1", "p1")
        })
        .await
        .unwrap();
    // The same id and request from another caller is a request of its own.
    let view = f
        .app
        .execute(&other_admin, "shared", b"fp", || {
            create_registry(&env, "c-2", "p2")
        })
        .await
        .unwrap()
        .view;
    let View::Registry(reg) = view else {
        panic!("expected a registry, got {view:?}");
    };
    assert_eq!(reg.credential.credential_id, "c-2");
    // A member of another environment replaying the admin's id gets nothing.
    let env_b = environment(&f.app).await;
    let member_b = Principal {
        token_id: "member-b".into(),
        role: Role::Member,
        environment_id: Some(env_b),
    };
    let err = f
        .app
        .execute(&member_b, "shared", b"fp", || {
            create_registry(&env, "c-3", "p3")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Domain(crate::domain::error::Error::NotFound { .. })
        ),
        "{err:?}"
    );
    f.app.close().await;
    f.store.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn request_ids_are_short_plain_text() {
    let f = fixture().await;
    for bad in [
        "a b".to_owned(),
        "x/y".to_owned(),
        "é".to_owned(),
        "a".repeat(129),
    ] {
        let err = f
            .app
            .execute(&admin(), &bad, b"fp", || Command::CreateEnvironment {
                environment_id: new_id(),
                name: "n".into(),
                orchestration: Some(Orchestration::Cattle),
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("request_id"), "{bad}: {err}");
    }
    assert_eq!(f.log.head(), 0, "a refused request id records nothing");
    let ok = "Az09._:-".repeat(16);
    f.app
        .execute(&admin(), &ok, b"fp", || Command::CreateEnvironment {
            environment_id: new_id(),
            name: "n".into(),
            orchestration: Some(Orchestration::Cattle),
        })
        .await
        .unwrap();
    f.app.close().await;
    f.store.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn a_credential_destroyed_while_a_pull_is_answered_is_never_handed_out() {
    let f = fixture().await;
    let env = environment(&f.app).await;
    f.app
        .execute(&admin(), "", &[], || create_registry(&env, "c-1", "pw"))
        .await
        .unwrap();
    assert_eq!(pulled_password(&f.app, &env).await, "pw");
    // The key goes behind the app's back, as a destruction between the
    // pull's read of the projection and its opening of the secret does.
    let store = f.store.as_ref().unwrap().keys();
    store.delete(&["c-1".to_owned()]).await.unwrap();
    f.app.data_keys().forget(&["c-1".to_owned()]);
    let err = f
        .app
        .resolve_pull(&admin(), &env, Target::Image("reg.example.com/app:1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict), "{err:?}");
    f.app.close().await;
    f.store.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn a_key_read_from_the_store_is_kept_only_while_its_credential_is_live() {
    let f = fixture().await;
    let env = environment(&f.app).await;
    f.app
        .execute(&admin(), "", &[], || create_registry(&env, "c-1", "pw"))
        .await
        .unwrap();
    let keys = f.app.data_keys();
    keys.forget(&["c-1".to_owned()]);
    let reg = f
        .app
        .projection()
        .read()
        .registries_in(&env, "")
        .next()
        .cloned()
        .unwrap();
    let ctx = crate::domain::credential::SecretContext {
        environment_id: &env,
        registry_id: &reg.id,
        credential_id: "c-1",
        version: reg.credential_version,
        field: "password",
    };
    // Read while not live: opened, but not kept.
    let opened = keys
        .open(&ctx, &reg.credential.password, || false)
        .await
        .unwrap();
    assert_eq!(opened.unwrap().as_slice(), b"pw");
    f.store
        .as_ref()
        .unwrap()
        .keys()
        .delete(&["c-1".to_owned()])
        .await
        .unwrap();
    let gone = keys
        .open(&ctx, &reg.credential.password, || true)
        .await
        .unwrap();
    assert!(gone.is_none(), "a key not kept is not in memory");
    f.app.close().await;
    f.store.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn callers_racing_on_one_registry_all_get_their_credential_recorded() {
    let f = fixture().await;
    let env = environment(&f.app).await;
    f.app
        .execute(&admin(), "", &[], || create_registry(&env, "c-0", "pw-0"))
        .await
        .unwrap();
    // More callers than a handful of rounds: each decides against the same
    // registry version, and every round of the race has one winner.
    const RACERS: usize = 24;
    let mut racers = tokio::task::JoinSet::new();
    for i in 1..=RACERS {
        let (app, env) = (f.app.clone(), env.clone());
        racers.spawn(async move {
            let id = format!("c-{i}");
            let done = app
                .execute(&admin(), "", &[], || {
                    create_registry(&env, &id, &format!("pw-{i}"))
                })
                .await;
            (i, done)
        });
    }
    let mut last = (0, 0);
    while let Some(joined) = racers.join_next().await {
        let (i, done) = joined.unwrap();
        let done = done.unwrap_or_else(|e| panic!("racer {i} was refused: {e:?}"));
        let View::Registry(registry) = done.view else {
            panic!("racer {i} got no registry");
        };
        assert_eq!(registry.credential.credential_id, format!("c-{i}"));
        last = last.max((done.revision, i));
    }
    // The registry holds the credential of the last commit, and its stream
    // has one version for the first write and one per racer.
    assert_eq!(
        pulled_password(&f.app, &env).await,
        format!("pw-{}", last.1)
    );
    let registry = f
        .app
        .projection
        .read()
        .registries_in(&env, "")
        .next()
        .expect("the registry")
        .clone();
    assert_eq!(registry.credential.credential_id, format!("c-{}", last.1));
    assert_eq!(registry.credential_version, RACERS as u64 + 1);
    f.app.close().await;
    f.store.unwrap().close().await.unwrap();
}

#[tokio::test]
async fn the_view_folded_as_the_store_opens_is_the_replayed_view() {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::crypto::KeySource::File(dir.path().join("kek"));
    let kek = || Kek::load(&key, true).unwrap();
    let data = dir.path().join("data");
    {
        let store = SledStore::open(&data).unwrap();
        let app = App::open(store.log(), store.keys(), kek(), None)
            .await
            .unwrap();
        for i in 0..3 {
            let env = environment(&app).await;
            let credential = format!("c-{i}");
            app.execute(&admin(), "", &[], || {
                create_registry(&env, &credential, "pw")
            })
            .await
            .unwrap();
        }
        app.close().await;
        drop(app);
        store.close().await.unwrap();
    }
    let mut folded = crate::domain::state::State::default();
    let store = SledStore::open_folding(&data, crate::store::sled::DEFAULT_CACHE_BYTES, &mut |r| {
        folded.apply(&crate::store::payload::decode(r)?);
        Ok(())
    })
    .unwrap();
    let mut replayed = crate::domain::state::State::default();
    crate::projection::catch_up(store.log().as_ref(), &mut replayed)
        .await
        .unwrap();
    assert_eq!(folded.position(), 6);
    assert_eq!(folded, replayed);
    // The app opened from it serves it: each registry's credential.
    let app = App::open_from(store.log(), store.keys(), kek(), None, folded)
        .await
        .unwrap();
    let state = app.projection().read().clone();
    assert_eq!(state, replayed);
    app.close().await;
    drop(app);
    store.close().await.unwrap();
}
