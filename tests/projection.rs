//! The projection is a fold of the log: after any sequence of commands the
//! live read model equals a fresh fold, and a reopened database folds to the
//! same state.

use std::sync::Arc;

use proptest::prelude::*;
use registrar::app::App;
use registrar::crypto::{Kek, KeySource};
use registrar::domain::access::Principal;
use registrar::domain::address::RegistryKind;
use registrar::domain::command::{Command, Verified};
use registrar::domain::credential::NewCredential;
use registrar::domain::event::Orchestration;
use registrar::domain::state::State;
use registrar::projection::catch_up;
use registrar::store::sled::SledStore;
use registrar::store::{EventLog, KeyStore};
use secrecy::SecretString;

#[derive(Debug, Clone)]
enum Op {
    CreateEnv,
    DeleteEnv(usize),
    Add {
        env: usize,
        address: usize,
        user: u8,
    },
    Edit {
        reg: usize,
        insecure: bool,
    },
    Verify {
        reg: usize,
        ok: bool,
    },
    Activate(usize),
    Deactivate(usize),
    Delete(usize),
    Settings {
        default: usize,
        whitelist: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::CreateEnv),
        1 => (0..4usize).prop_map(Op::DeleteEnv),
        5 => (0..4usize, 0..5usize, any::<u8>()).prop_map(|(env, address, user)| Op::Add { env, address, user }),
        2 => (0..8usize, any::<bool>()).prop_map(|(reg, insecure)| Op::Edit { reg, insecure }),
        2 => (0..8usize, any::<bool>()).prop_map(|(reg, ok)| Op::Verify { reg, ok }),
        2 => (0..8usize).prop_map(Op::Activate),
        2 => (0..8usize).prop_map(Op::Deactivate),
        1 => (0..8usize).prop_map(Op::Delete),
        1 => (0..3usize, any::<bool>()).prop_map(|(default, whitelist)| Op::Settings { default, whitelist }),
    ]
}

const ADDRESSES: [&str; 5] = [
    "a.io",
    "b.io:5000",
    "docker.io",
    "index.docker.io",
    "[::1]:5000",
];

async fn open(dir: &std::path::Path) -> (App, SledStore) {
    let kek = Kek::load(&KeySource::File(dir.with_extension("key")), true).unwrap();
    let store = SledStore::open(dir).unwrap();
    let app = App::open(
        store.log() as Arc<dyn EventLog>,
        store.keys() as Arc<dyn KeyStore>,
        kek,
        None,
    )
    .await
    .unwrap();
    (app, store)
}

async fn fresh_fold(app: &App) -> State {
    let mut state = State::default();
    catch_up(app.log().as_ref(), &mut state).await.unwrap();
    state
}

fn verified(ok: bool) -> Verified {
    Verified {
        ok,
        message: if ok { "accepted" } else { "rejected" }.to_owned(),
    }
}

fn command(op: &Op, state: &State, n: usize) -> Option<Command> {
    let envs: Vec<String> = state.environments_after("").map(|e| e.id.clone()).collect();
    let regs: Vec<String> = envs
        .iter()
        .flat_map(|e| {
            state
                .registries_in(e, "")
                .map(|r| r.id.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    let pick = |v: &Vec<String>, i: usize| (!v.is_empty()).then(|| v[i % v.len()].clone());
    Some(match op {
        Op::CreateEnv => Command::CreateEnvironment {
            environment_id: format!("env{n}"),
            name: format!("e{n}"),
            orchestration: Some(Orchestration::Cattle),
        },
        Op::DeleteEnv(i) => Command::DeleteEnvironment {
            environment_id: pick(&envs, *i)?,
        },
        Op::Add { env, address, user } => Command::CreateRegistry {
            environment_id: pick(&envs, *env)?,
            registry_id: format!("reg{n}"),
            credential_id: format!("cred{n}"),
            kind: Some(RegistryKind::Custom),
            address: ADDRESSES[*address].to_owned(),
            credential: NewCredential {
                email: "a@b.c".into(),
                username: format!("user{user}"),
                password: SecretString::from(format!("pw{n}")),
                expire_time: None,
                ecr: None,
            },
            insecure: false,
            ca_certificate_pem: String::new(),
            verified: user
                .is_multiple_of(2)
                .then(|| verified(user.is_multiple_of(4))),
        },
        Op::Edit { reg, insecure } => Command::UpdateRegistry {
            registry_id: pick(&regs, *reg)?,
            credential_id: format!("cred{n}"),
            address: String::new(),
            email: String::new(),
            username: String::new(),
            password: Some(SecretString::from(format!("pw{n}"))),
            insecure: Some(*insecure),
            ca_certificate_pem: None,
            expire_time: None,
            ecr: None,
            verified: insecure.then(|| verified(n.is_multiple_of(2))),
        },
        Op::Verify { reg, ok } => {
            let registry_id = pick(&regs, *reg)?;
            let credential_id = state
                .registry(&registry_id)?
                .credential
                .credential_id
                .clone();
            Command::RecordVerification {
                registry_id,
                credential_id,
                verified: verified(*ok),
            }
        }
        Op::Activate(i) => Command::ActivateRegistry {
            registry_id: pick(&regs, *i)?,
        },
        Op::Deactivate(i) => Command::DeactivateRegistry {
            registry_id: pick(&regs, *i)?,
        },
        Op::Delete(i) => Command::DeleteRegistry {
            registry_id: pick(&regs, *i)?,
        },
        Op::Settings { default, whitelist } => Command::UpdateSettings {
            default_registry: Some(["", "reg:5000", "docker.io"][*default].to_owned()),
            whitelist: Some(if *whitelist {
                vec!["a.io".into(), "*.io".into()]
            } else {
                vec![]
            }),
        },
    })
}

async fn run(ops: Vec<Op>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (app, store) = open(&dir).await;
    let admin = Principal::system();
    for (n, op) in ops.iter().enumerate() {
        let cmd = {
            let state = app.projection().read();
            command(op, &state, n)
        };
        if let Some(cmd) = cmd {
            // Refusals (no-op transitions) are part of the sequence too.
            let _ = app.execute(&admin, "", &[], || cmd.clone()).await;
        }
    }
    let live = app.projection().read().clone();
    assert_eq!(live, fresh_fold(&app).await);
    assert_eq!(live.position(), app.log().head());
    app.close().await;
    drop(app);
    store.close().await.unwrap();

    let (app, store) = open(&dir).await;
    assert_eq!(*app.projection().read(), live);
    app.close().await;
    drop(app);
    store.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_live_projection_equals_a_fresh_fold_also_after_reopening(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
