//! The authorization matrix: every RPC × every kind of caller × environment
//! A, environment B and a missing one. The expected codes are the table
//! below; every cell must match, and no refused answer carries a secret.

mod common;

use common::{custom, Clients, TestServer};
use registrar::pb;
use tonic::Code;

/// Every password in this test carries this marker.
const SECRET: &str = "SECRETMARK";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    Garbage,
    Revoked,
    AgentA,
    AgentB,
    MemberA,
    Admin,
}

const CALLERS: [Caller; 7] = [
    Caller::NoToken,
    Caller::Garbage,
    Caller::Revoked,
    Caller::AgentA,
    Caller::AgentB,
    Caller::MemberA,
    Caller::Admin,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    A,
    B,
    Missing,
}

const TARGETS: [Target; 3] = [Target::A, Target::B, Target::Missing];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    CreateEnvironment,
    GetEnvironment,
    ListEnvironments,
    CreateRegistry,
    GetRegistry,
    ListRegistries,
    UpdateRegistry,
    ActivateRegistry,
    DeactivateRegistry,
    DeleteRegistry,
    GetSettings,
    UpdateSettings,
    CreateToken,
    ListTokens,
    RevokeToken,
    ResolvePull,
    Watch,
    GetHostConfig,
    GetPullSecret,
    GetKeyStatus,
    RewrapKeys,
    // Last: deleting environment A or B ends the fixtures' use.
    DeleteEnvironment,
}

const OK: Code = Code::Ok;
const NF: Code = Code::NotFound;
const PD: Code = Code::PermissionDenied;

/// Expected codes for the authenticated callers, per target [A, B, missing].
/// Callers without a valid token (none, garbage, revoked) always get
/// UNAUTHENTICATED.
#[rustfmt::skip]
const TABLE: &[(Rpc, [[Code; 3]; 4])] = &[
    //                          agent of A     agent of B     member of A    admin
    (Rpc::CreateEnvironment,  [[PD, PD, PD], [PD, PD, PD], [PD, PD, PD], [OK, OK, OK]]),
    (Rpc::GetEnvironment,     [[OK, NF, NF], [NF, OK, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::ListEnvironments,   [[OK, OK, OK], [OK, OK, OK], [OK, OK, OK], [OK, OK, OK]]),
    (Rpc::CreateRegistry,     [[PD, NF, NF], [NF, PD, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::GetRegistry,        [[OK, NF, NF], [NF, OK, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::ListRegistries,     [[OK, NF, NF], [NF, OK, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::UpdateRegistry,     [[PD, NF, NF], [NF, PD, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::ActivateRegistry,   [[PD, NF, NF], [NF, PD, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::DeactivateRegistry, [[PD, NF, NF], [NF, PD, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::DeleteRegistry,     [[PD, NF, NF], [NF, PD, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::GetSettings,        [[PD, PD, PD], [PD, PD, PD], [PD, PD, PD], [OK, OK, OK]]),
    (Rpc::UpdateSettings,     [[PD, PD, PD], [PD, PD, PD], [PD, PD, PD], [OK, OK, OK]]),
    (Rpc::CreateToken,        [[PD, PD, PD], [PD, PD, PD], [PD, PD, PD], [OK, OK, NF]]),
    (Rpc::ListTokens,         [[PD, PD, PD], [PD, PD, PD], [PD, PD, PD], [OK, OK, OK]]),
    (Rpc::RevokeToken,        [[PD, PD, PD], [PD, PD, PD], [PD, PD, PD], [OK, OK, NF]]),
    (Rpc::ResolvePull,        [[OK, NF, NF], [NF, OK, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::Watch,              [[OK, NF, NF], [NF, OK, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::GetHostConfig,      [[OK, NF, NF], [NF, OK, NF], [OK, NF, NF], [OK, OK, NF]]),
    (Rpc::GetPullSecret,      [[OK, NF, NF], [NF, OK, NF], [PD, PD, PD], [PD, PD, PD]]),
    (Rpc::GetKeyStatus,       [[PD, PD, PD], [PD, PD, PD], [PD, PD, PD], [OK, OK, OK]]),
    (Rpc::RewrapKeys,         [[PD, PD, PD], [PD, PD, PD], [PD, PD, PD], [OK, OK, OK]]),
    (Rpc::DeleteEnvironment,  [[PD, PD, PD], [PD, PD, PD], [PD, PD, PD], [OK, OK, NF]]),
];

fn expected(rpc: Rpc, caller: Caller, target: Target) -> Code {
    let column = match caller {
        Caller::NoToken | Caller::Garbage | Caller::Revoked => return Code::Unauthenticated,
        Caller::AgentA => 0,
        Caller::AgentB => 1,
        Caller::MemberA => 2,
        Caller::Admin => 3,
    };
    let row = TABLE
        .iter()
        .find(|(r, _)| *r == rpc)
        .expect("every RPC has a row");
    row.1[column][target as usize]
}

/// The fixture: two Kubernetes environments with a registry each, and tokens.
struct World {
    env_a: String,
    env_b: String,
    admin: Clients,
    tokens: Vec<(Caller, Option<String>)>,
    next: usize,
}

impl World {
    fn env(&self, t: Target) -> String {
        match t {
            Target::A => self.env_a.clone(),
            Target::B => self.env_b.clone(),
            Target::Missing => "missing".to_owned(),
        }
    }

    /// A fresh registry in the target's environment (`missing` for none).
    async fn registry(&mut self, t: Target, active: bool) -> String {
        if t == Target::Missing {
            return "missing".to_owned();
        }
        self.next += 1;
        let env = self.env(t);
        let r = self
            .admin
            .add_registry(custom(
                &env,
                &format!("r{}.io", self.next),
                "u",
                &format!("pw-{SECRET}-{}", self.next),
            ))
            .await;
        if !active {
            self.admin
                .reg
                .deactivate_registry(pb::DeactivateRegistryRequest {
                    id: r.id.clone(),
                    request_id: String::new(),
                })
                .await
                .unwrap();
        }
        r.id
    }

    /// A fresh member token's id in the target's environment.
    async fn token_id(&mut self, t: Target) -> String {
        if t == Target::Missing {
            return "missing".to_owned();
        }
        let env = self.env(t);
        let token = self.admin.token(pb::Role::Member, &env).await;
        token.split('.').nth(1).unwrap().to_owned()
    }
}

/// Calls one RPC; Ok carries the answer's Debug print.
async fn call(
    w: &mut World,
    c: &mut Clients,
    rpc: Rpc,
    t: Target,
) -> Result<String, tonic::Status> {
    let env = w.env(t);
    macro_rules! done {
        ($e:expr) => {
            $e.await.map(|r| format!("{:?}", r.into_inner()))
        };
    }
    match rpc {
        Rpc::CreateEnvironment => done!(c.env.create_environment(pb::CreateEnvironmentRequest {
            name: "new".into(),
            orchestration: pb::Orchestration::Cattle as i32,
            request_id: String::new(),
        })),
        Rpc::GetEnvironment => done!(c.env.get_environment(pb::GetEnvironmentRequest {
            id: env,
            min_revision: 0,
        })),
        Rpc::ListEnvironments => done!(c
            .env
            .list_environments(pb::ListEnvironmentsRequest::default())),
        Rpc::DeleteEnvironment => done!(c.env.delete_environment(pb::DeleteEnvironmentRequest {
            id: env,
            request_id: String::new()
        })),
        Rpc::CreateRegistry => {
            w.next += 1;
            done!(c.reg.create_registry(custom(
                &env,
                &format!("new{}.io", w.next),
                "u",
                &format!("pw-{SECRET}")
            )))
        }
        Rpc::GetRegistry => {
            let id = w.registry(t, true).await;
            done!(c.reg.get_registry(pb::GetRegistryRequest {
                id,
                min_revision: 0
            }))
        }
        Rpc::ListRegistries => done!(c.reg.list_registries(pb::ListRegistriesRequest {
            min_revision: 0,
            environment_id: env,
            ..Default::default()
        })),
        Rpc::UpdateRegistry => {
            let id = w.registry(t, true).await;
            done!(c.reg.update_registry(pb::UpdateRegistryRequest {
                id,
                password: format!("pw2-{SECRET}"),
                ..Default::default()
            }))
        }
        Rpc::ActivateRegistry => {
            let id = w.registry(t, false).await;
            done!(c.reg.activate_registry(pb::ActivateRegistryRequest {
                id,
                request_id: String::new()
            }))
        }
        Rpc::DeactivateRegistry => {
            let id = w.registry(t, true).await;
            done!(c.reg.deactivate_registry(pb::DeactivateRegistryRequest {
                id,
                request_id: String::new()
            }))
        }
        Rpc::DeleteRegistry => {
            let id = w.registry(t, true).await;
            done!(c.reg.delete_registry(pb::DeleteRegistryRequest {
                id,
                request_id: String::new()
            }))
        }
        Rpc::GetSettings => done!(c
            .settings
            .get_settings(pb::GetSettingsRequest { min_revision: 0 })),
        Rpc::UpdateSettings => done!(c
            .settings
            .update_settings(pb::UpdateSettingsRequest::default())),
        Rpc::CreateToken => done!(c.tokens.create_token(pb::CreateTokenRequest {
            role: pb::Role::Agent as i32,
            environment_id: env,
            description: String::new(),
        })),
        Rpc::ListTokens => done!(c.tokens.list_tokens(pb::ListTokensRequest::default())),
        Rpc::RevokeToken => {
            let token_id = w.token_id(t).await;
            done!(c.tokens.revoke_token(pb::RevokeTokenRequest { token_id }))
        }
        Rpc::ResolvePull => {
            // The image of env A's and B's first registry (r1.io, r2.io).
            let image = format!("r{}.io/app", if t == Target::B { 2 } else { 1 });
            done!(c.pull.resolve_pull(pb::ResolvePullRequest {
                min_revision: 0,
                environment_id: env,
                target: Some(pb::resolve_pull_request::Target::Image(image)),
            }))
        }
        Rpc::Watch => c
            .pull
            .watch(pb::WatchRequest {
                min_revision: 0,
                environment_id: env,
                ..Default::default()
            })
            .await
            .map(|_| String::new()),
        Rpc::GetHostConfig => done!(c.pull.get_host_config(pb::GetHostConfigRequest {
            min_revision: 0,
            environment_id: env,
            format: pb::HostConfigFormat::Docker as i32,
            include_auth: false,
        })),
        Rpc::GetPullSecret => done!(c.pull.get_pull_secret(pb::GetPullSecretRequest {
            min_revision: 0,
            environment_id: env,
            ..Default::default()
        })),
        Rpc::GetKeyStatus => done!(c.keys.get_key_status(pb::GetKeyStatusRequest {})),
        Rpc::RewrapKeys => done!(c.keys.rewrap_keys(pb::RewrapKeysRequest { limit: 0 })),
    }
}

#[tokio::test]
async fn every_rpc_answers_every_caller_as_the_table_says() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let env_a = admin.create_env("a", pb::Orchestration::Kubernetes).await;
    let env_b = admin.create_env("b", pb::Orchestration::Kubernetes).await;
    let revoked = admin.token(pb::Role::Admin, "").await;
    admin
        .tokens
        .revoke_token(pb::RevokeTokenRequest {
            token_id: revoked.split('.').nth(1).unwrap().to_owned(),
        })
        .await
        .unwrap();
    let tokens = vec![
        (Caller::NoToken, None),
        (
            Caller::Garbage,
            Some("rgr.garbage.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
        ),
        (Caller::Revoked, Some(revoked)),
        (
            Caller::AgentA,
            Some(admin.token(pb::Role::Agent, &env_a).await),
        ),
        (
            Caller::AgentB,
            Some(admin.token(pb::Role::Agent, &env_b).await),
        ),
        (
            Caller::MemberA,
            Some(admin.token(pb::Role::Member, &env_a).await),
        ),
        (Caller::Admin, Some(server.admin.clone())),
    ];
    let mut w = World {
        env_a,
        env_b,
        admin,
        tokens,
        next: 0,
    };
    // r1.io in A and r2.io in B, for ResolvePull.
    w.registry(Target::A, true).await;
    w.registry(Target::B, true).await;

    let mut cells = 0;
    let mut mismatches = Vec::new();
    for (rpc, _) in TABLE {
        for caller in CALLERS {
            // Environment A goes last, deleting it as the very last call.
            for target in [Target::Missing, Target::B, Target::A] {
                let token = w
                    .tokens
                    .iter()
                    .find(|(c, _)| *c == caller)
                    .and_then(|(_, t)| t.clone());
                let mut c = server.clients_with(token.as_deref()).await;
                let want = expected(*rpc, caller, target);
                let got = call(&mut w, &mut c, *rpc, target).await;
                cells += 1;
                let code = got.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
                if code != want {
                    mismatches.push(format!(
                        "{rpc:?} as {caller:?} on {target:?}: want {want:?}, got {got:?}"
                    ));
                }
                match &got {
                    Err(status) => {
                        let everything = format!("{} {:?}", status.message(), status.details());
                        assert!(
                            !everything.contains(SECRET),
                            "{rpc:?} {caller:?} {target:?}: a refusal carried a secret"
                        );
                    }
                    Ok(answer) if !matches!(rpc, Rpc::ResolvePull | Rpc::GetPullSecret) => {
                        assert!(
                            !answer.contains(SECRET),
                            "{rpc:?} {caller:?} {target:?}: the answer carried a secret"
                        );
                    }
                    Ok(_) => {}
                }
            }
        }
    }
    assert_eq!(cells, TABLE.len() * CALLERS.len() * TARGETS.len());
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// One mutating request, as the admin first sends it with a request id.
#[derive(Debug, Clone)]
enum Mutation {
    CreateEnvironment(pb::CreateEnvironmentRequest),
    CreateRegistry(pb::CreateRegistryRequest),
    UpdateRegistry(pb::UpdateRegistryRequest),
    DeactivateRegistry(pb::DeactivateRegistryRequest),
    ActivateRegistry(pb::ActivateRegistryRequest),
    UpdateSettings(pb::UpdateSettingsRequest),
    DeleteRegistry(pb::DeleteRegistryRequest),
    DeleteEnvironment(pb::DeleteEnvironmentRequest),
}

impl Mutation {
    async fn send(&self, c: &mut Clients) -> Result<String, tonic::Status> {
        macro_rules! done {
            ($e:expr) => {
                $e.await.map(|r| format!("{:?}", r.into_inner()))
            };
        }
        match self.clone() {
            Mutation::CreateEnvironment(r) => done!(c.env.create_environment(r)),
            Mutation::CreateRegistry(r) => done!(c.reg.create_registry(r)),
            Mutation::UpdateRegistry(r) => done!(c.reg.update_registry(r)),
            Mutation::DeactivateRegistry(r) => done!(c.reg.deactivate_registry(r)),
            Mutation::ActivateRegistry(r) => done!(c.reg.activate_registry(r)),
            Mutation::UpdateSettings(r) => done!(c.settings.update_settings(r)),
            Mutation::DeleteRegistry(r) => done!(c.reg.delete_registry(r)),
            Mutation::DeleteEnvironment(r) => done!(c.env.delete_environment(r)),
        }
    }
}

/// Every mutating RPC, replayed by other callers with the request id the
/// admin used: each is authorized as a first call of its own (agents and
/// the other environment's callers get nothing of the admin's answer), and
/// the admin's own retry still gets its first answer.
#[tokio::test]
async fn a_request_id_another_caller_used_gives_nothing_of_its_answer() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let env_a = admin.create_env("a", pb::Orchestration::Kubernetes).await;
    let env_b = admin.create_env("b", pb::Orchestration::Kubernetes).await;
    let reg = admin
        .add_registry(custom(&env_a, "r.io", "u", &format!("pw-{SECRET}")))
        .await;
    let others = [
        ("agent of A", admin.token(pb::Role::Agent, &env_a).await),
        ("agent of B", admin.token(pb::Role::Agent, &env_b).await),
        ("member of B", admin.token(pb::Role::Member, &env_b).await),
    ];
    let id = |n: &str| format!("shared-{n}");
    let mutations = [
        Mutation::CreateEnvironment(pb::CreateEnvironmentRequest {
            name: "c".into(),
            orchestration: pb::Orchestration::Cattle as i32,
            request_id: id("env"),
        }),
        Mutation::CreateRegistry(pb::CreateRegistryRequest {
            request_id: id("create"),
            ..custom(&env_a, "s.io", "u", &format!("pw-{SECRET}"))
        }),
        Mutation::UpdateRegistry(pb::UpdateRegistryRequest {
            id: reg.id.clone(),
            password: format!("pw2-{SECRET}"),
            request_id: id("update"),
            ..Default::default()
        }),
        Mutation::DeactivateRegistry(pb::DeactivateRegistryRequest {
            id: reg.id.clone(),
            request_id: id("deactivate"),
        }),
        Mutation::ActivateRegistry(pb::ActivateRegistryRequest {
            id: reg.id.clone(),
            request_id: id("activate"),
        }),
        Mutation::UpdateSettings(pb::UpdateSettingsRequest {
            settings: Some(pb::Settings {
                default_registry: "r.io".into(),
                whitelist: Vec::new(),
            }),
            update_mask: None,
            request_id: id("settings"),
        }),
        Mutation::DeleteRegistry(pb::DeleteRegistryRequest {
            id: reg.id.clone(),
            request_id: id("delete"),
        }),
        Mutation::DeleteEnvironment(pb::DeleteEnvironmentRequest {
            id: env_a.clone(),
            request_id: id("delete-env"),
        }),
    ];
    for m in &mutations {
        let first = m.send(&mut admin).await.expect("the admin's call");
        for (who, token) in &others {
            let mut c = server.clients_with(Some(token)).await;
            let status = match m.send(&mut c).await {
                Ok(answer) => panic!("{who} replaying {m:?} got {answer}"),
                Err(status) => status,
            };
            assert!(
                matches!(status.code(), Code::PermissionDenied | Code::NotFound),
                "{who} replaying {m:?}: {status:?}"
            );
            assert!(!status.message().contains(SECRET));
        }
        // The admin's retry is answered from the log, as the first call was.
        let again = m.send(&mut admin).await.expect("the admin's retry");
        assert_eq!(again, first, "{m:?}");
    }

    // A tenant cannot claim another's ids in advance: a member of B uses an
    // id first; the admin's request with it is its own.
    let mut member_b = server.clients_with(Some(&others[2].1)).await;
    member_b
        .add_registry(pb::CreateRegistryRequest {
            request_id: "claimed".into(),
            ..custom(&env_b, "b.io", "u", "p")
        })
        .await;
    admin
        .env
        .create_environment(pb::CreateEnvironmentRequest {
            name: "d".into(),
            orchestration: pb::Orchestration::Cattle as i32,
            request_id: "claimed".into(),
        })
        .await
        .expect("another caller's id is no duplicate");
}
