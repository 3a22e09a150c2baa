//! Given/when/then tests of `decide` and `State::apply`: the lifecycle rules
//! R1, R2 and R5–R10, the settings and token commands, and the quotas.
//! Long because the rules are many; one given/when/then per rule.

use std::time::{Duration, SystemTime};

use secrecy::SecretString;

use super::*;
use crate::domain::address::RegistryKind;
use crate::domain::credential::NewEcrKeys;
use crate::domain::event::Orchestration;
use crate::domain::quota::{check, Quotas};
use crate::testing::ContextSealer;

fn admin() -> Principal {
    Principal::system()
}

fn member(env: &str) -> Principal {
    Principal {
        token_id: "m".into(),
        role: Role::Member,
        environment_id: Some(env.into()),
    }
}

fn agent(env: &str) -> Principal {
    Principal {
        token_id: "a".into(),
        role: Role::Agent,
        environment_id: Some(env.into()),
    }
}

/// A test world: a state built by deciding and applying commands.
struct World {
    state: State,
    now: SystemTime,
    next: u64,
}

impl World {
    fn new() -> Self {
        Self {
            state: State::default(),
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            next: 0,
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    /// When: a command; then: its decision, applied to the state if accepted.
    fn when(&mut self, who: &Principal, command: Command) -> Result<Decision> {
        let decision = decide(&self.state, who, command, self.now, &mut ContextSealer)?;
        self.state
            .apply_decision(&decision, self.now, &who.token_id);
        Ok(decision)
    }

    fn given_environment(&mut self, orchestration: Orchestration) -> String {
        let id = self.id("env");
        self.when(
            &admin(),
            Command::CreateEnvironment {
                environment_id: id.clone(),
                name: "prod".into(),
                orchestration: Some(orchestration),
            },
        )
        .unwrap();
        id
    }

    fn add(
        &mut self,
        env: &str,
        kind: RegistryKind,
        address: &str,
        user: &str,
    ) -> Result<Decision> {
        let registry_id = self.id("reg");
        let credential_id = self.id("cred");
        self.when(
            &admin(),
            create(env, &registry_id, &credential_id, kind, address, user),
        )
    }

    fn only_registry(&self, env: &str) -> Registry {
        let regs: Vec<_> = self.state.registries_in(env, "").cloned().collect();
        assert_eq!(regs.len(), 1, "{regs:?}");
        regs.into_iter().next().unwrap()
    }
}

fn create(
    env: &str,
    registry_id: &str,
    credential_id: &str,
    kind: RegistryKind,
    address: &str,
    user: &str,
) -> Command {
    Command::CreateRegistry {
        environment_id: env.into(),
        registry_id: registry_id.into(),
        credential_id: credential_id.into(),
        kind: Some(kind),
        address: address.into(),
        credential: NewCredential {
            email: "ops@example.com".into(),
            username: user.into(),
            password: SecretString::from("pw".to_owned()),
            expire_time: None,
            ecr: None,
        },
        insecure: false,
        ca_certificate_pem: String::new(),
        verified: None,
    }
}

fn update(id: &str, credential_id: &str, password: Option<&str>) -> Command {
    Command::UpdateRegistry {
        registry_id: id.into(),
        credential_id: credential_id.into(),
        address: String::new(),
        email: String::new(),
        username: "bob".into(),
        password: password.map(|p| SecretString::from(p.to_owned())),
        insecure: Some(true),
        ca_certificate_pem: None,
        expire_time: None,
        ecr: None,
        verified: None,
    }
}

fn invalid_field(result: Result<Decision>) -> &'static str {
    match result {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn an_environment_needs_an_orchestration_type() {
    let mut w = World::new();
    let r = w.when(
        &admin(),
        Command::CreateEnvironment {
            environment_id: "e".into(),
            name: "n".into(),
            orchestration: None,
        },
    );
    assert_eq!(invalid_field(r), "orchestration");
}

#[test]
fn only_admins_create_environments() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    let r = w.when(
        &member(&env),
        Command::CreateEnvironment {
            environment_id: "e".into(),
            name: "n".into(),
            orchestration: Some(Orchestration::Cattle),
        },
    );
    assert!(matches!(r, Err(Error::PermissionDenied(_))));
}

#[test]
fn a_new_address_creates_an_active_registry_with_a_canonical_address() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    w.add(&env, RegistryKind::Custom, "Reg.Example.com:5000", "alice")
        .unwrap();
    let reg = w.only_registry(&env);
    assert_eq!(reg.address.as_str(), "reg.example.com:5000");
    assert_eq!(reg.state, RegistryState::Active);
    assert_eq!(reg.credential.username, "alice");
}

#[test]
fn the_secret_is_sealed_to_environment_registry_credential_and_version() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    w.add(&env, RegistryKind::Custom, "r.io", "alice").unwrap();
    let reg = w.only_registry(&env);
    let bound = String::from_utf8(reg.credential.password.ciphertext.clone()).unwrap();
    assert_eq!(
        bound,
        format!(
            "{env}|{}|{}|1|password",
            reg.id, reg.credential.credential_id
        )
    );
    assert_eq!(reg.credential_version, 1);
}

#[test]
fn adding_for_an_existing_address_replaces_the_credential_and_keeps_id_and_state() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    w.add(&env, RegistryKind::DockerHub, "", "alice").unwrap();
    let first = w.only_registry(&env);
    w.when(
        &admin(),
        Command::DeactivateRegistry {
            registry_id: first.id.clone(),
        },
    )
    .unwrap();

    // docker.io is an alias of the same registry (R4).
    let d = w
        .add(&env, RegistryKind::DockerHub, "docker.io", "bob")
        .unwrap();
    let second = w.only_registry(&env);

    assert_eq!(second.id, first.id);
    assert_eq!(second.state, RegistryState::Inactive);
    assert_eq!(second.credential.username, "bob");
    assert_ne!(
        second.credential.credential_id,
        first.credential.credential_id
    );
    match &d.appends[1].events[0] {
        Event::CredentialReplaced {
            previous_credential_id,
            cause,
            ..
        } => {
            assert_eq!(previous_credential_id, &first.credential.credential_id);
            assert_eq!(*cause, CredentialCause::Added);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_same_address_in_another_environment_is_another_registry() {
    let mut w = World::new();
    let a = w.given_environment(Orchestration::Cattle);
    let b = w.given_environment(Orchestration::Kubernetes);
    w.add(&a, RegistryKind::Quay, "", "alice").unwrap();
    w.add(&b, RegistryKind::Quay, "quay.io", "bob").unwrap();
    assert_ne!(w.only_registry(&a).id, w.only_registry(&b).id);
}

#[test]
fn a_credential_added_under_another_kind_must_suit_the_registry_at_the_address() {
    // A CUSTOM credential for a GCR registry's address used to skip the JSON
    // key check and land on the GCR registry as it was.
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    let key = serde_json::json!({
        "type": "service_account",
        "client_email": "puller@proj.iam.gserviceaccount.com",
        "private_key": "k",
        "private_key_id": "i",
    })
    .to_string();
    let mut gcr = create(&env, "r", "c", RegistryKind::Gcr, "gcr.io", "_json_key");
    if let Command::CreateRegistry { credential, .. } = &mut gcr {
        credential.password = SecretString::from(key);
    }
    w.when(&admin(), gcr).unwrap();

    let r = w.add(&env, RegistryKind::Custom, "gcr.io", "alice");

    assert_eq!(invalid_field(r), "username");
    let registry = w.only_registry(&env);
    assert_eq!(registry.kind, RegistryKind::Gcr);
    assert_eq!(registry.credential.username, "_json_key");
}

#[test]
fn addresses_that_do_not_fit_their_kind_are_refused() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    for (kind, address) in [
        (RegistryKind::Custom, "https://reg.io"),
        (RegistryKind::Custom, "reg.io/path"),
        (RegistryKind::Custom, "user@reg.io"),
        (RegistryKind::Custom, "*.reg.io"),
        (RegistryKind::Custom, ""),
        (RegistryKind::Quay, "reg.io"),
        (RegistryKind::Ecr, "reg.io"),
        (RegistryKind::Gcr, "reg.io"),
    ] {
        assert_eq!(
            invalid_field(w.add(&env, kind, address, "u")),
            "address",
            "{address}"
        );
    }
    assert_eq!(w.state.registries_in(&env, "").count(), 0);
}

#[test]
fn a_missing_kind_is_refused() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    let mut cmd = create(&env, "r", "c", RegistryKind::Custom, "r.io", "u");
    if let Command::CreateRegistry { kind, .. } = &mut cmd {
        *kind = None;
    }
    assert_eq!(invalid_field(w.when(&admin(), cmd)), "kind");
}

#[test]
fn a_registry_in_a_missing_or_foreign_environment_is_not_found() {
    let mut w = World::new();
    let a = w.given_environment(Orchestration::Cattle);
    let b = w.given_environment(Orchestration::Cattle);
    let r = w.when(
        &admin(),
        create("nope", "r", "c", RegistryKind::Quay, "", "u"),
    );
    assert!(matches!(r, Err(Error::NotFound { .. })));
    let r = w.when(
        &member(&a),
        create(&b, "r", "c", RegistryKind::Quay, "", "u"),
    );
    assert!(matches!(r, Err(Error::NotFound { .. })));
}

#[test]
fn an_edit_replaces_the_credential_and_needs_the_password_again() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    w.add(&env, RegistryKind::Custom, "r.io", "alice").unwrap();
    let before = w.only_registry(&env);

    assert_eq!(
        invalid_field(w.when(&admin(), update(&before.id, "c9", None))),
        "password"
    );
    assert_eq!(
        invalid_field(w.when(&admin(), update(&before.id, "c9", Some("")))),
        "password"
    );

    w.when(&admin(), update(&before.id, "c9", Some("new")))
        .unwrap();
    let after = w.only_registry(&env);
    assert_eq!(after.id, before.id);
    assert_eq!(after.credential.credential_id, "c9");
    assert_eq!(after.credential.username, "bob");
    assert_eq!(
        after.credential.email, "ops@example.com",
        "empty email keeps the current one"
    );
    assert!(after.insecure);
    assert_eq!(after.credential_version, 2);
}

#[test]
fn an_edit_never_changes_the_address() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    w.add(&env, RegistryKind::Custom, "r.io", "alice").unwrap();
    let reg = w.only_registry(&env);
    let mut cmd = update(&reg.id, "c9", Some("pw"));
    if let Command::UpdateRegistry { address, .. } = &mut cmd {
        *address = "other.io".into();
    }
    assert_eq!(invalid_field(w.when(&admin(), cmd)), "address");

    // Repeating the current address, in any spelling, is no change.
    let mut cmd = update(&reg.id, "c9", Some("pw"));
    if let Command::UpdateRegistry { address, .. } = &mut cmd {
        *address = "R.IO".into();
    }
    assert!(w.when(&admin(), cmd).is_ok());
}

#[test]
fn deactivate_and_activate_refuse_no_op_transitions() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    w.add(&env, RegistryKind::Custom, "r.io", "alice").unwrap();
    let id = w.only_registry(&env).id;
    let activate = || Command::ActivateRegistry {
        registry_id: id.clone(),
    };
    let deactivate = || Command::DeactivateRegistry {
        registry_id: id.clone(),
    };

    assert!(matches!(
        w.when(&admin(), activate()),
        Err(Error::FailedPrecondition(_))
    ));
    w.when(&admin(), deactivate()).unwrap();
    assert_eq!(w.only_registry(&env).state, RegistryState::Inactive);
    assert!(matches!(
        w.when(&admin(), deactivate()),
        Err(Error::FailedPrecondition(_))
    ));
    // Any member may activate without the password (R10).
    w.when(&member(&env), activate()).unwrap();
    assert_eq!(w.only_registry(&env).state, RegistryState::Active);
}

#[test]
fn agents_cannot_change_registries() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    w.add(&env, RegistryKind::Custom, "r.io", "alice").unwrap();
    let id = w.only_registry(&env).id;
    let r = w.when(
        &agent(&env),
        Command::DeactivateRegistry { registry_id: id },
    );
    assert!(matches!(r, Err(Error::PermissionDenied(_))));
}

#[test]
fn delete_forgets_the_address_and_destroys_the_credential() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    w.add(&env, RegistryKind::Custom, "r.io", "alice").unwrap();
    let reg = w.only_registry(&env);
    let d = w
        .when(
            &admin(),
            Command::DeleteRegistry {
                registry_id: reg.id.clone(),
            },
        )
        .unwrap();
    assert_eq!(
        d.appends[0].events,
        vec![Event::RegistryDeleted {
            registry_id: reg.id.clone(),
            credential_id: reg.credential.credential_id.clone(),
        }]
    );
    assert!(w.state.registry(&reg.id).is_none());
    assert!(w.state.registry_at(&env, &reg.address).is_none());

    // A new registry on the address continues its stream with a new id.
    w.add(&env, RegistryKind::Custom, "r.io", "carol").unwrap();
    let again = w.only_registry(&env);
    assert_ne!(again.id, reg.id);
    assert_eq!(again.credential_version, 3);
}

#[test]
fn unknown_registry_ids_are_not_found() {
    let mut w = World::new();
    w.given_environment(Orchestration::Cattle);
    for cmd in [
        Command::ActivateRegistry {
            registry_id: "x".into(),
        },
        Command::DeactivateRegistry {
            registry_id: "x".into(),
        },
        Command::DeleteRegistry {
            registry_id: "x".into(),
        },
        update("x", "c", Some("p")),
    ] {
        assert!(matches!(w.when(&admin(), cmd), Err(Error::NotFound { .. })));
    }
}

#[test]
fn deleting_an_environment_deletes_its_registries() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Kubernetes);
    w.add(&env, RegistryKind::Custom, "a.io", "u").unwrap();
    w.add(&env, RegistryKind::Custom, "b.io", "u").unwrap();
    let d = w
        .when(
            &admin(),
            Command::DeleteEnvironment {
                environment_id: env.clone(),
            },
        )
        .unwrap();
    assert_eq!(d.appends.len(), 3);
    assert!(w.state.environment(&env).is_none());
    assert_eq!(w.state.registries_in(&env, "").count(), 0);
}

#[test]
fn registries_guard_their_environment_stream() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    let d = w.add(&env, RegistryKind::Custom, "a.io", "u").unwrap();
    assert_eq!(d.appends[0].stream, format!("env/{env}"));
    assert_eq!(d.appends[0].expected_version, 1);
    assert!(d.appends[0].events.is_empty());
}

#[test]
fn settings_are_validated_and_kept_when_not_given() {
    let mut w = World::new();
    w.when(
        &admin(),
        Command::UpdateSettings {
            default_registry: Some("reg:5000".into()),
            whitelist: Some(vec!["reg:5000".into(), "docker.io".into()]),
        },
    )
    .unwrap();
    w.when(
        &admin(),
        Command::UpdateSettings {
            default_registry: None,
            whitelist: Some(vec![]),
        },
    )
    .unwrap();
    assert_eq!(
        w.state
            .settings()
            .default_registry
            .as_ref()
            .map(Address::as_str),
        Some("reg:5000")
    );
    assert!(w.state.settings().whitelist.is_empty());
    let r = w.when(
        &admin(),
        Command::UpdateSettings {
            default_registry: Some("http://reg".into()),
            whitelist: None,
        },
    );
    assert_eq!(invalid_field(r), "settings.default_registry");
    let r = w.when(
        &member("e"),
        Command::UpdateSettings {
            default_registry: None,
            whitelist: None,
        },
    );
    assert!(matches!(r, Err(Error::PermissionDenied(_))));
}

#[test]
fn tokens_need_an_environment_unless_admin() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    let token = |role, env: &str| Command::CreateToken {
        token_id: "t1".into(),
        role: Some(role),
        environment_id: env.into(),
        description: String::new(),
        secret_sha256: [7; 32],
    };
    assert_eq!(
        invalid_field(w.when(&admin(), token(Role::Agent, ""))),
        "environment_id"
    );
    assert_eq!(
        invalid_field(w.when(&admin(), token(Role::Admin, &env))),
        "environment_id"
    );
    assert!(matches!(
        w.when(&admin(), token(Role::Agent, "nope")),
        Err(Error::NotFound { .. })
    ));
    w.when(&admin(), token(Role::Agent, &env)).unwrap();
    assert_eq!(
        w.state.token("t1").unwrap().environment_id.as_deref(),
        Some(env.as_str())
    );
    w.when(
        &admin(),
        Command::RevokeToken {
            token_id: "t1".into(),
        },
    )
    .unwrap();
    assert!(w.state.token("t1").is_none());
}

#[test]
fn a_password_never_replaces_the_iam_keys_of_an_ecr_registry() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    let address = "123456789012.dkr.ecr.us-west-2.amazonaws.com";
    let mut command = create(&env, "reg-ecr", "cred-ecr", RegistryKind::Ecr, address, "");
    if let Command::CreateRegistry { credential, .. } = &mut command {
        credential.password = SecretString::from(String::new());
        credential.ecr = Some(NewEcrKeys {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG".to_owned()),
        });
    }
    w.when(&admin(), command).unwrap();
    let reg = w.only_registry(&env);
    assert!(reg.credential.ecr.is_some());
    // Given the secret access key typed where a password goes: refused.
    let mut edit = update(&reg.id, "cred-2", Some("wJalrXUtnFEMI/K7MDENG"));
    if let Command::UpdateRegistry { username, .. } = &mut edit {
        username.clear();
    }
    assert_eq!(invalid_field(w.when(&admin(), edit)), "ecr");
    assert_eq!(
        w.only_registry(&env).credential.credential_id,
        "cred-ecr",
        "nothing changed"
    );
    // New keys are accepted.
    let mut edit = update(&reg.id, "cred-3", None);
    if let Command::UpdateRegistry { username, ecr, .. } = &mut edit {
        username.clear();
        *ecr = Some(NewEcrKeys {
            access_key_id: "AKIAI44QH8DHBEXAMPLE".into(),
            secret_access_key: SecretString::from("je7MtGbClwBF/2Zp9Utk".to_owned()),
        });
    }
    w.when(&admin(), edit).unwrap();
    let after = w.only_registry(&env);
    assert_eq!(after.credential.credential_id, "cred-3");
    assert!(after.credential.ecr.is_some());
}

impl World {
    /// A command creating a CUSTOM registry at `host` with fresh ids.
    fn create_custom(&mut self, env: &str, host: &str) -> Command {
        let (registry_id, credential_id) = (self.id("reg"), self.id("cred"));
        create(
            env,
            &registry_id,
            &credential_id,
            RegistryKind::Custom,
            host,
            "u",
        )
    }
}

/// Decides a command and checks it against `quotas`, then applies it.
fn when_within(w: &mut World, quotas: &Quotas, command: Command) -> Result<Decision> {
    let decision = decide(
        &w.state,
        &admin(),
        command.clone(),
        w.now,
        &mut ContextSealer,
    )?;
    check(&w.state, &decision, quotas)?;
    w.when(&admin(), command)
}

fn with_ca(mut command: Command, pem: &str) -> Command {
    if let Command::CreateRegistry {
        ca_certificate_pem, ..
    } = &mut command
    {
        *ca_certificate_pem = pem.to_owned();
    }
    command
}

#[test]
fn an_environment_holds_at_most_its_quota_of_registries() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    let other = w.given_environment(Orchestration::Cattle);
    let quotas = Quotas {
        registries_per_environment: 2,
        ..Quotas::default()
    };
    for host in ["a.io", "b.io"] {
        let c = w.create_custom(&env, host);
        when_within(&mut w, &quotas, c).unwrap();
    }
    let third = create(&env, "reg-c", "cred-c", RegistryKind::Custom, "c.io", "u");
    let err = when_within(&mut w, &quotas, third).unwrap_err();
    assert!(
        matches!(&err, Error::QuotaExceeded(m) if m.contains("--max-registries-per-environment")),
        "{err:?}"
    );
    assert_eq!(
        w.state.registries_in(&env, "").count(),
        2,
        "nothing changed"
    );
    // A new credential for an address it has is no new registry.
    let again = create(&env, "reg-a2", "cred-a2", RegistryKind::Custom, "a.io", "u");
    when_within(&mut w, &quotas, again).unwrap();
    // Another environment has a quota of its own.
    let elsewhere = create(&other, "reg-o", "cred-o", RegistryKind::Custom, "c.io", "u");
    when_within(&mut w, &quotas, elsewhere).unwrap();
}

#[test]
fn the_ca_bundles_of_an_environment_are_bounded_in_bytes() {
    let mut w = World::new();
    let env = w.given_environment(Orchestration::Cattle);
    let pem = crate::domain::trust::tests::test_cert();
    let quotas = Quotas {
        ca_bytes_per_environment: pem.len() * 2,
        ..Quotas::default()
    };
    for host in ["a.io", "b.io"] {
        let c = w.create_custom(&env, host);
        when_within(&mut w, &quotas, with_ca(c, &pem)).unwrap();
    }
    let c = create(&env, "reg-c", "cred-c", RegistryKind::Custom, "c.io", "u");
    let err = when_within(&mut w, &quotas, with_ca(c.clone(), &pem)).unwrap_err();
    assert!(
        matches!(&err, Error::QuotaExceeded(m) if m.contains("--max-ca-bytes-per-environment")),
        "{err:?}"
    );
    // Without a bundle it fits; replacing a bundle by one as large does too.
    when_within(&mut w, &quotas, c).unwrap();
    let again = create(&env, "reg-a2", "cred-a2", RegistryKind::Custom, "a.io", "u");
    when_within(&mut w, &quotas, with_ca(again, &pem)).unwrap();
}
