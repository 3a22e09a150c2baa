//! Tests of `State::apply`: the indexes by id and by address, and the
//! versions of streams.

use super::test_events::registry_created;
use super::*;

fn fold(state: &mut State, event: Event) {
    super::test_events::fold(state, event, SystemTime::UNIX_EPOCH);
}

fn create(state: &mut State, env: &str, id: &str, address: &str) {
    fold(state, registry_created(env, id, address, None));
}

fn ids<'a>(registries: impl Iterator<Item = &'a Registry>) -> Vec<&'a str> {
    registries.map(|r| r.id.as_str()).collect()
}

#[test]
fn registries_are_found_by_environment_and_address_and_listed_in_address_order() {
    let mut state = State::default();
    create(&mut state, "e2", "r4", "b.example.com");
    create(&mut state, "e1", "r1", "c.example.com");
    create(&mut state, "e1", "r2", "a.example.com");
    create(&mut state, "e2", "r3", "a.example.com");
    let a = Address::parse("a.example.com").unwrap();
    assert_eq!(
        state.registry_at("e1", &a).map(|r| r.id.as_str()),
        Some("r2")
    );
    assert_eq!(
        state.registry_at("e2", &a).map(|r| r.id.as_str()),
        Some("r3")
    );
    assert!(state.registry_at("e3", &a).is_none());
    assert_eq!(ids(state.registries_in("e1", "")), ["r2", "r1"]);
    assert_eq!(ids(state.registries_in("e1", "a.example.com")), ["r1"]);
    assert_eq!(ids(state.registries_in("e2", "")), ["r3", "r4"]);
    assert!(ids(state.registries_in("e3", "")).is_empty());

    for id in ["r2", "r1"] {
        fold(
            &mut state,
            Event::RegistryDeleted {
                registry_id: id.into(),
                credential_id: format!("c-{id}"),
            },
        );
    }
    assert!(state.registry_at("e1", &a).is_none());
    assert!(ids(state.registries_in("e1", "")).is_empty());
    assert_eq!(ids(state.registries_in("e2", "")), ["r3", "r4"]);
    // An environment whose last registry is gone leaves no entry.
    assert_eq!(state.by_address.keys().collect::<Vec<_>>(), ["e2"]);
}

/// Folds `event` at the next position as the next version of `stream`.
fn fold_on(state: &mut State, stream: &str, event: Event) {
    let recorded = Recorded {
        position: state.position() + 1,
        stream: stream.into(),
        stream_version: state.stream_version(stream) + 1,
        time: SystemTime::UNIX_EPOCH,
        actor: "t".into(),
        request_id: String::new(),
        event,
    };
    state.apply(&recorded);
}

#[test]
fn a_registry_streams_version_outlives_its_registry() {
    let mut state = State::default();
    let (stream, other) = ("reg/e1/a.example.com", "reg/e1/b.example.com");
    let a = Address::parse("a.example.com").unwrap();
    fold_on(
        &mut state,
        stream,
        registry_created("e1", "r1", "a.example.com", None),
    );
    fold_on(
        &mut state,
        other,
        registry_created("e1", "r2", "b.example.com", None),
    );
    fold_on(
        &mut state,
        "env/e1",
        Event::EnvironmentDeleted {
            environment_id: "x".into(),
        },
    );
    let deleted = Event::RegistryDeleted {
        registry_id: "r1".into(),
        credential_id: "c-r1".into(),
    };
    fold_on(&mut state, stream, deleted);
    assert_eq!(state.stream_version(stream), 2);
    assert_eq!(state.stream_version(other), 1);
    assert_eq!(state.stream_version("env/e1"), 1);
    assert_eq!(state.stream_version("reg/e2/a.example.com"), 0);
    assert!(state.registry_at("e1", &a).is_none());
    assert_eq!(ids(state.registries_in("e1", "")), ["r2"]);

    // Created again at the address, it goes on from the stream's version.
    fold_on(
        &mut state,
        stream,
        registry_created("e1", "r3", "a.example.com", None),
    );
    assert_eq!(state.stream_version(stream), 3);
    assert_eq!(
        state.registry_at("e1", &a).map(|r| r.id.as_str()),
        Some("r3")
    );
    assert_eq!(ids(state.registries_in("e1", "")), ["r3", "r2"]);

    // A stream whose registries are all gone keeps its environment's
    // versions, and lists nothing.
    for (id, on) in [("r3", stream), ("r2", other)] {
        let deleted = Event::RegistryDeleted {
            registry_id: id.into(),
            credential_id: format!("c-{id}"),
        };
        fold_on(&mut state, on, deleted);
    }
    assert!(ids(state.registries_in("e1", "")).is_empty());
    assert_eq!(
        (state.stream_version(stream), state.stream_version(other)),
        (4, 2)
    );
}

#[test]
fn set_version_adds_a_new_stream_and_moves_a_known_one() {
    let mut versions = HashMap::new();
    set_version(&mut versions, "env/e1", 1);
    set_version(&mut versions, "reg/e1/r.example.com", 1);
    set_version(&mut versions, "env/e1", 2);
    set_version(&mut versions, "env/e1", 3);
    assert_eq!(versions.len(), 2);
    assert_eq!(versions["env/e1"], 3);
    assert_eq!(versions["reg/e1/r.example.com"], 1);
}

/// `event`'s credential with ECR access keys, or without any.
fn with_ecr(mut event: Event, ecr: bool) -> Event {
    use crate::domain::credential::{EcrKeysRecord, SealedSecret};
    if let Event::RegistryCreated { credential, .. }
    | Event::CredentialReplaced { credential, .. } = &mut event
    {
        credential.ecr = ecr.then(|| {
            Box::new(EcrKeysRecord {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                secret_access_key: SealedSecret {
                    nonce: vec![],
                    ciphertext: vec![],
                },
            })
        });
    }
    event
}

fn replaced(id: &str, ecr: bool) -> Event {
    let Event::RegistryCreated { credential, .. } =
        registry_created("e", id, "x.example.com", None)
    else {
        unreachable!()
    };
    with_ecr(
        Event::CredentialReplaced {
            registry_id: id.into(),
            credential,
            previous_credential_id: format!("c-{id}"),
            insecure: false,
            ca_certificate_pem: String::new(),
            cause: crate::domain::event::CredentialCause::Added,
        },
        ecr,
    )
}

#[test]
fn the_ecr_registries_are_those_whose_credential_carries_access_keys() {
    let mut state = State::default();
    fn ecr(state: &State) -> Vec<&str> {
        ids(state.ecr_registries())
    }
    for (id, keys) in [("r1", true), ("r2", false), ("r3", true), ("r4", false)] {
        let address = format!("{id}.example.com");
        fold(
            &mut state,
            with_ecr(registry_created("e", id, &address, None), keys),
        );
    }
    assert_eq!(ecr(&state), ["r1", "r3"]);
    // Keys replaced by a password, a password by keys.
    fold(&mut state, replaced("r1", false));
    fold(&mut state, replaced("r2", true));
    assert_eq!(ecr(&state), ["r2", "r3"]);
    fold(
        &mut state,
        Event::RegistryDeleted {
            registry_id: "r3".into(),
            credential_id: "c-r3".into(),
        },
    );
    // A replacement for a registry that is gone is not one.
    fold(&mut state, replaced("r9", true));
    assert_eq!(ecr(&state), ["r2"]);
    assert_eq!(
        state.ecr.len(),
        1,
        "no id is kept for a registry that is gone"
    );
}
