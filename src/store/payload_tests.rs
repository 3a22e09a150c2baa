//! Golden bytes: every event type of schema version 1, as written to the log,
//! must keep decoding to the same event in every later build.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::store::codec;

fn sealed() -> SealedSecret {
    SealedSecret {
        nonce: vec![1; 12],
        ciphertext: vec![2; 20],
    }
}

fn credential() -> CredentialRecord {
    CredentialRecord {
        credential_id: "c1".into(),
        email: "ops@example.com".into(),
        username: "alice".into(),
        password: sealed(),
        expire_time: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
        ecr: None,
    }
}

/// One sample of every event type.
fn samples() -> Vec<Event> {
    vec![
        Event::EnvironmentCreated {
            environment_id: "e1".into(),
            name: "prod".into(),
            orchestration: Orchestration::Kubernetes,
        },
        Event::EnvironmentDeleted {
            environment_id: "e1".into(),
        },
        Event::RegistryCreated {
            registry_id: "r1".into(),
            environment_id: "e1".into(),
            kind: RegistryKind::Custom,
            address: Address::parse("reg.example.com:5000").expect("valid"),
            insecure: true,
            ca_certificate_pem: String::new(),
            credential: credential(),
        },
        Event::CredentialReplaced {
            registry_id: "r1".into(),
            credential: credential(),
            previous_credential_id: "c0".into(),
            insecure: false,
            ca_certificate_pem: String::new(),
            cause: CredentialCause::Edited,
        },
        Event::RegistryDeactivated {
            registry_id: "r1".into(),
        },
        Event::RegistryActivated {
            registry_id: "r1".into(),
        },
        Event::RegistryDeleted {
            registry_id: "r1".into(),
            credential_id: "c1".into(),
        },
        Event::SettingsUpdated {
            default_registry: Some(Address::parse("reg:5000").expect("valid")),
            whitelist: Whitelist::parse([
                "reg:5000",
                "quay.io/myorg/",
                "*.dkr.ecr.*.amazonaws.com",
            ])
            .expect("valid"),
        },
        Event::TokenCreated {
            token_id: "t1".into(),
            role: Role::Agent,
            environment_id: Some("e1".into()),
            description: "host agent".into(),
            secret_sha256: [9; 32],
        },
        Event::TokenRevoked {
            token_id: "t1".into(),
        },
        Event::RegistryCreated {
            registry_id: "r2".into(),
            environment_id: "e1".into(),
            kind: RegistryKind::Ecr,
            address: Address::parse("123456789012.dkr.ecr.us-west-2.amazonaws.com").expect("valid"),
            insecure: false,
            ca_certificate_pem: String::new(),
            credential: CredentialRecord {
                credential_id: "c2".into(),
                email: String::new(),
                username: "AWS".into(),
                password: SealedSecret {
                    nonce: Vec::new(),
                    ciphertext: Vec::new(),
                },
                expire_time: None,
                ecr: Some(Box::new(EcrKeysRecord {
                    access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                    secret_access_key: sealed(),
                })),
            },
        },
        Event::EcrTokenRefreshed {
            registry_id: "r2".into(),
            credential_id: "c2".into(),
            token: sealed(),
            issued_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            expire_time: UNIX_EPOCH + Duration::from_secs(1_700_043_200),
        },
        Event::EcrRefreshFailed {
            registry_id: "r2".into(),
            credential_id: "c2".into(),
            message: "ECR answered 403: the access key is not valid".into(),
        },
        Event::RegistryVerified {
            registry_id: "r1".into(),
            credential_id: "c3".into(),
            ok: false,
            message:
                "the registry rejected the credential: 401 from https://reg.example.com:5000/v2/"
                    .into(),
        },
    ]
}

fn record(position: u64, event: &Event) -> Vec<u8> {
    let new = encode(event);
    let mut env = Envelope {
        event_type: new.event_type,
        schema_version: new.schema_version,
        stream: "reg/e1/reg.example.com:5000".into(),
        stream_version: position,
        position,
        time: Some(system_to_timestamp(
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )),
        actor: "t0".into(),
        request_id: "req".into(),
        request_fingerprint: vec![7; 4],
        commit_size: 1,
        payload: new.payload,
        crc32c: None,
    };
    codec::encode(&mut env)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

const GOLDEN_V1: &str = include_str!("golden/events-v1.txt");

#[test]
fn version_1_records_are_written_byte_for_byte_as_before() {
    let golden: Vec<(&str, &str)> = GOLDEN_V1
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once(' ').expect("type and hex"))
        .collect();
    let samples = samples();
    assert_eq!(
        golden.len(),
        samples.len(),
        "one golden record per event type"
    );
    for (i, (event, (event_type, bytes))) in samples.iter().zip(&golden).enumerate() {
        let actual = hex(&record(i as u64 + 1, event));
        assert_eq!(
            &actual,
            bytes,
            "golden bytes of {event_type} changed: bump its schema version and add an upcaster\nnew: {} {actual}",
            event.event_type()
        );
    }
}

#[test]
fn version_1_records_decode_to_the_same_events() {
    let samples = samples();
    for (i, line) in GOLDEN_V1.lines().filter(|l| !l.is_empty()).enumerate() {
        let (event_type, bytes) = line.split_once(' ').expect("type and hex");
        let position = i as u64 + 1;
        let envelope = codec::decode_verified(&unhex(bytes), position).expect("verifies");
        assert_eq!(envelope.event_type, event_type);
        let recorded = decode(&envelope).expect("decodes");
        assert_eq!(recorded.event, samples[i], "{event_type}");
        assert_eq!(recorded.position, position);
    }
}

#[test]
fn an_unknown_schema_version_stops_with_a_clear_error() {
    let mut envelope = codec::decode_verified(&record(1, &samples()[0]), 1).expect("verifies");
    envelope.schema_version = 2;
    let err = decode(&envelope).expect_err("refused").to_string();
    assert!(err.contains("schema version 2"), "{err}");
}
