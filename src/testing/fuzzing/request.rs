//! Request validation against a seeded state.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use secrecy::SecretString;

use crate::api::convert;
use crate::domain::access::Principal;
use crate::domain::address::{Address, RegistryKind};
use crate::domain::command::Command;
use crate::domain::credential::{NewCredential, NewEcrKeys};
use crate::domain::decide::{decide, Decision};
use crate::domain::error::Error;
use crate::domain::event::{Orchestration, Role};
use crate::domain::image::{ImageError, ImageRef};
use crate::domain::resolve::{self, DenyReason, Target};
use crate::domain::state::{RegistryState, State};
use crate::domain::whitelist::Whitelist;
use crate::pb;
use crate::store::{payload, Envelope};
use crate::testing::ContextSealer;

/// The time every request is decided at.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Applies an accepted decision as the app would commit it.
fn commit(state: &mut State, who: &Principal, decision: &Decision) {
    state.apply_decision(decision, now(), &who.token_id);
}

/// Environments `e1` (Cattle) and `e2` (Kubernetes); in `e1` a custom
/// registry `r1`, an ECR registry with access keys `r2` and an inactive
/// Docker Hub `r3`; in `e2` a Quay registry `r4` whose credential expires
/// and a GCR registry `r5`.
static SEEDED: LazyLock<State> = LazyLock::new(|| {
    let admin = Principal::system();
    let mut state = State::default();
    let credential = |username: &str, password: &str| NewCredential {
        email: "ops@example.com".into(),
        username: username.into(),
        password: SecretString::from(password.to_owned()),
        expire_time: None,
        ecr: None,
    };
    let registry = |env: &str, id: &str, kind, address: &str, credential| Command::CreateRegistry {
        environment_id: env.into(),
        registry_id: id.into(),
        credential_id: format!("c-{id}"),
        kind: Some(kind),
        address: address.into(),
        credential,
        insecure: false,
        ca_certificate_pem: String::new(),
        verified: None,
    };
    let commands = [
        Command::CreateEnvironment {
            environment_id: "e1".into(),
            name: "prod".into(),
            orchestration: Some(Orchestration::Cattle),
        },
        Command::CreateEnvironment {
            environment_id: "e2".into(),
            name: "kube".into(),
            orchestration: Some(Orchestration::Kubernetes),
        },
        registry(
            "e1",
            "r1",
            RegistryKind::Custom,
            "reg.example.com:5000",
            credential("alice", "s3cret"),
        ),
        registry(
            "e1",
            "r2",
            RegistryKind::Ecr,
            "123456789012.dkr.ecr.us-west-2.amazonaws.com",
            NewCredential {
                ecr: Some(NewEcrKeys {
                    access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                    secret_access_key: SecretString::from(
                        "wJalrXUtnFEMIK7MDENGbPxRfiCY".to_owned(),
                    ),
                }),
                ..credential("", "")
            },
        ),
        registry(
            "e1",
            "r3",
            RegistryKind::DockerHub,
            "",
            credential("bob", "hub"),
        ),
        Command::DeactivateRegistry {
            registry_id: "r3".into(),
        },
        registry(
            "e2",
            "r4",
            RegistryKind::Quay,
            "quay.io",
            NewCredential {
                expire_time: Some(now() + Duration::from_secs(3600)),
                ..credential("robot", "quay")
            },
        ),
        registry(
            "e2",
            "r5",
            RegistryKind::Gcr,
            "gcr.io",
            credential(
                crate::domain::credential::GCR_JSON_KEY_USER,
                r#"{"type":"service_account","client_email":"puller@proj.iam.gserviceaccount.com","private_key":"k","private_key_id":"i"}"#,
            ),
        ),
    ];
    for command in commands {
        let decision = decide(&state, &admin, command, now(), &mut ContextSealer)
            .expect("the seed commands are valid");
        commit(&mut state, &admin, &decision);
    }
    state
});

/// Request validation: arbitrary bytes decoded as an API request (the first
/// byte picks the message and the caller) are turned into a command the way
/// the API does and decided against a seeded state. A refusal is a domain
/// error that names a field of that request and shows no secret; an
/// acceptance commits, and what it records survives the log.
pub fn request(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let who = match (selector >> 4) % 4 {
        0 => Principal::system(),
        1 => principal(Role::Member, "e1"),
        2 => principal(Role::Member, "e2"),
        _ => principal(Role::Agent, "e1"),
    };
    let state = &*SEEDED;
    match selector % 6 {
        0 => create_environment(state, &who, message),
        1 => create_registry(state, &who, message),
        2 => update_registry(state, &who, message),
        3 => resolve_pull(state, &who, message),
        4 => update_settings(state, &who, message),
        _ => create_token(state, &who, message),
    }
}

fn principal(role: Role, environment_id: &str) -> Principal {
    Principal {
        token_id: format!("t-{environment_id}"),
        role,
        environment_id: Some(environment_id.to_owned()),
    }
}

/// Decides `command` and checks the answer: a refusal names one of `fields`
/// and shows no non-ASCII character that only `secrets` hold (none of the
/// `public` fields has it); an acceptance is committed to a copy of the
/// state, its events round-trip through the payload codec, and the copy is
/// returned for further checks.
fn decide_checked(
    state: &State,
    who: &Principal,
    command: Command,
    fields: &[&str],
    secrets: &[&str],
    public: &[&str],
) -> Option<State> {
    let name = command.name();
    match decide(state, who, command, now(), &mut ContextSealer) {
        Ok(decision) => {
            for event in decision.appends.iter().flat_map(|a| &a.events) {
                let new = payload::encode(event);
                let env = Envelope {
                    event_type: new.event_type,
                    schema_version: new.schema_version,
                    payload: new.payload,
                    position: 1,
                    ..Envelope::default()
                };
                let decoded = payload::decode(&env)
                    .unwrap_or_else(|e| panic!("{name}: recorded event does not decode: {e}"));
                assert_eq!(&decoded.event, event, "{name}: event changed in the log");
            }
            let mut next = state.clone();
            commit(&mut next, who, &decision);
            Some(next)
        }
        Err(error) => {
            if let Error::Invalid { field, .. } = &error {
                assert!(
                    fields.contains(field),
                    "{name}: refusal names {field:?}, not a field of the request: {error}"
                );
            }
            let message = error.to_string();
            for secret in secrets {
                // A character that only the secret holds, and that no message
                // template has, can only reach the message from the secret.
                let leaked = secret.chars().filter(|c| !c.is_ascii()).find(|c| {
                    message.contains(*c) && !public.iter().any(|field| field.contains(*c))
                });
                assert_eq!(leaked, None, "{name}: refusal shows a secret: {message}");
            }
            None
        }
    }
}

fn create_environment(state: &State, who: &Principal, message: &[u8]) {
    let Ok(r) = pb::CreateEnvironmentRequest::decode(message) else {
        return;
    };
    let Ok(orchestration) = convert::orchestration(r.orchestration) else {
        return;
    };
    let command = Command::CreateEnvironment {
        environment_id: "e-new".into(),
        name: r.name.clone(),
        orchestration,
    };
    let Some(next) = decide_checked(state, who, command, &["name", "orchestration"], &[], &[])
    else {
        return;
    };
    let env = next
        .environment("e-new")
        .expect("an accepted environment exists");
    assert_eq!(env.name, r.name);
}

const CREDENTIAL_FIELDS: [&str; 9] = [
    "address",
    "email",
    "username",
    "password",
    "expire_time",
    "ecr",
    "ecr.access_key_id",
    "ecr.secret_access_key",
    "ca_certificate_pem",
];

fn create_registry(state: &State, who: &Principal, message: &[u8]) {
    let Ok(r) = pb::CreateRegistryRequest::decode(message) else {
        return;
    };
    // The API's own conversion: an unknown kind is refused before the domain.
    let Ok(command) = convert::create_registry(&r, "r-new".into(), "c-new".into()) else {
        return;
    };
    let kind = convert::kind(r.kind).expect("the conversion took this kind");
    let mut fields = vec!["kind"];
    fields.extend(CREDENTIAL_FIELDS);
    let secret_key = r.ecr.as_ref().map_or("", |e| e.secret_access_key.as_str());
    let access_key = r.ecr.as_ref().map_or("", |e| e.access_key_id.as_str());
    let public = [
        r.environment_id.as_str(),
        &r.address,
        &r.email,
        &r.username,
        &r.ca_certificate_pem,
        access_key,
    ];
    let Some(next) = decide_checked(
        state,
        who,
        command,
        &fields,
        &[&r.password, secret_key],
        &public,
    ) else {
        return;
    };
    let kind = kind.expect("an accepted registry has a kind");
    let address = Address::for_kind(kind, &r.address).expect("an accepted address parses");
    let registry = next
        .registry_at(&r.environment_id, &address)
        .expect("an accepted registry is found at its address");
    check_registries(&next);
    check_resolves_to(&next, &r.environment_id, address.as_str(), &registry.id);
}

/// Checks that every registry's address and credential suit its kind, as
/// they did when that kind's checks let them in.
fn check_registries(state: &State) {
    for env in state.environments_after("") {
        for registry in state.registries_in(&env.id, "") {
            let (kind, address, credential) =
                (registry.kind, &registry.address, &registry.credential);
            assert_eq!(
                Address::for_kind(kind, address.as_str()).as_ref(),
                Ok(address),
                "{kind} registry {} has address {address}",
                registry.id
            );
            if kind != RegistryKind::Ecr {
                assert!(credential.ecr.is_none(), "{kind} registry with ECR keys");
            }
            if kind == RegistryKind::Gcr {
                assert_eq!(
                    credential.username,
                    crate::domain::credential::GCR_JSON_KEY_USER,
                    "GCR registry {} has another username",
                    registry.id
                );
            }
        }
    }
}

fn update_registry(state: &State, who: &Principal, message: &[u8]) {
    let Ok(r) = pb::UpdateRegistryRequest::decode(message) else {
        return;
    };
    let command = convert::update_registry(&r, "c-edit".into());
    let secret_key = r.ecr.as_ref().map_or("", |e| e.secret_access_key.as_str());
    let access_key = r.ecr.as_ref().map_or("", |e| e.access_key_id.as_str());
    let public = [
        r.id.as_str(),
        &r.address,
        &r.email,
        &r.username,
        r.ca_certificate_pem.as_deref().unwrap_or_default(),
        access_key,
    ];
    let Some(next) = decide_checked(
        state,
        who,
        command,
        &CREDENTIAL_FIELDS,
        &[&r.password, secret_key],
        &public,
    ) else {
        return;
    };
    let before = state.registry(&r.id).expect("an edited registry existed");
    let after = next.registry(&r.id).expect("an edited registry exists");
    assert_eq!(
        (&after.address, after.kind, after.state),
        (&before.address, before.kind, before.state),
        "an edit changed what it may not"
    );
    assert_eq!(after.credential.credential_id, "c-edit");
    check_registries(&next);
    check_resolves_to(&next, &after.environment_id, after.address.as_str(), &r.id);
}

/// Checks that a credential-helper question about `host` in `environment_id`
/// finds registry `id` (when it is active and usable).
fn check_resolves_to(state: &State, environment_id: &str, host: &str, id: &str) {
    let resolution = resolve::resolve(state, environment_id, Target::Registry(host), now())
        .unwrap_or_else(|e| panic!("the canonical address {host:?} is refused: {e}"));
    if let resolve::Decision::Allowed(Some(registry)) = resolution.decision {
        assert_eq!(registry.id, id, "{host:?} resolved to another registry");
    }
}

fn resolve_pull(state: &State, who: &Principal, message: &[u8]) {
    let Ok(r) = pb::ResolvePullRequest::decode(message) else {
        return;
    };
    let target = match &r.target {
        Some(pb::resolve_pull_request::Target::Image(i)) => Target::Image(i),
        Some(pb::resolve_pull_request::Target::Registry(h)) => Target::Registry(h),
        None => return,
    };
    let env = match who.scope(&r.environment_id) {
        Ok(env) if state.environment(env).is_some() => env,
        Ok(_) => return,
        Err(error) => {
            assert_field(&error, &["environment_id"]);
            return;
        }
    };
    let resolution = match resolve::resolve(state, env, target, now()) {
        Ok(resolution) => resolution,
        Err(error) => {
            assert_field(&error, &["image", "registry"]);
            return;
        }
    };
    let registry = &resolution.registry;
    assert_eq!(
        Address::parse(registry.as_str()).as_ref(),
        Ok(registry),
        "resolved registry of {target:?}"
    );
    if let Target::Image(_) = target {
        let image = ImageRef::parse(&resolution.resolved_image).unwrap_or_else(|e| {
            panic!(
                "{target:?} resolved to {:?}: {e}",
                resolution.resolved_image
            )
        });
        assert_eq!(image.to_string(), resolution.resolved_image);
        assert_eq!(Address::parse(image.domain()).as_ref(), Ok(registry));
    }
    match resolution.decision {
        resolve::Decision::Allowed(Some(reg)) => {
            assert_eq!(
                (reg.environment_id.as_str(), &reg.address),
                (env, registry),
                "{target:?} got another registry's credential"
            );
            assert_eq!(reg.state, RegistryState::Active, "{target:?}");
            assert!(reg.credential.usable(now()), "{target:?}");
        }
        resolve::Decision::Allowed(None) => {
            assert!(
                state.registry_at(env, registry).is_none(),
                "{target:?} went anonymous past a registry"
            );
        }
        resolve::Decision::Denied(DenyReason::NotWhitelisted)
        | resolve::Decision::Denied(DenyReason::DefaultNotWhitelisted) => {
            assert!(!state.settings().whitelist.is_empty(), "{target:?}");
        }
        resolve::Decision::Denied(_) => {
            assert!(state.registry_at(env, registry).is_some(), "{target:?}");
        }
    }
}

fn assert_field(error: &Error, fields: &[&str]) {
    if let Error::Invalid { field, .. } = error {
        assert!(fields.contains(field), "refusal names {field:?}: {error}");
    }
}

fn update_settings(state: &State, who: &Principal, message: &[u8]) {
    let Ok(r) = pb::UpdateSettingsRequest::decode(message) else {
        return;
    };
    // The API refuses an unknown update_mask path before the domain sees it.
    let Ok(command) = convert::update_settings(&r) else {
        return;
    };
    let fields = ["settings.default_registry", "settings.whitelist"];
    let Some(next) = decide_checked(state, who, command, &fields, &[], &[]) else {
        return;
    };
    let saved = next.settings();
    let strings = saved.whitelist.to_strings();
    assert_eq!(
        Whitelist::parse(&strings).as_ref(),
        Ok(&saved.whitelist),
        "saved whitelist {strings:?}"
    );
    if let Some(default) = &saved.default_registry {
        assert_eq!(Address::parse(default.as_str()).as_ref(), Ok(default));
        assert!(!default.is_docker_hub(), "Docker Hub is kept as no default");
        // A default applies to every image that names no registry, so each
        // of them must still parse once moved there.
        let short = ImageRef::parse("ubuntu").expect("ubuntu is a valid reference");
        match short.with_domain(default.as_str()) {
            Ok(_) | Err(ImageError::NameTooLong { .. }) => {}
            Err(e) => panic!("default registry {default} cannot take images: {e}"),
        }
    }
}

fn create_token(state: &State, who: &Principal, message: &[u8]) {
    let Ok(r) = pb::CreateTokenRequest::decode(message) else {
        return;
    };
    let Ok(role) = convert::role(r.role) else {
        return;
    };
    let command = Command::CreateToken {
        token_id: "t-new".into(),
        role,
        environment_id: r.environment_id.clone(),
        description: r.description.clone(),
        secret_sha256: [7; 32],
    };
    let fields = ["description", "role", "environment_id"];
    let Some(next) = decide_checked(state, who, command, &fields, &[], &[]) else {
        return;
    };
    let token = next.token("t-new").expect("an accepted token exists");
    assert_eq!(token.role == Role::Admin, token.environment_id.is_none());
    if let Some(env) = &token.environment_id {
        assert!(
            next.environment(env).is_some(),
            "token for a missing environment"
        );
    }
}
