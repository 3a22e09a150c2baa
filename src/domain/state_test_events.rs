//! Events for the domain's tests: a fold on streams of their own, and a
//! registry created with a credential sealed to nothing.

use super::*;
use crate::domain::credential::SealedSecret;

/// Folds `event` into `state` at the next position, on a stream of
/// its own.
pub(crate) fn fold(state: &mut State, event: Event, time: SystemTime) {
    let position = state.position() + 1;
    state.apply(&Recorded {
        position,
        stream: format!("s{position}"),
        stream_version: 1,
        time,
        actor: "t".into(),
        request_id: String::new(),
        event,
    });
}

/// A custom registry `id` at `address` in `env`, its credential
/// `c-<id>` (sealed to nothing) expiring at `expire`.
pub(crate) fn registry_created(
    env: &str,
    id: &str,
    address: &str,
    expire: Option<SystemTime>,
) -> Event {
    Event::RegistryCreated {
        registry_id: id.into(),
        environment_id: env.into(),
        kind: RegistryKind::Custom,
        address: Address::parse(address).unwrap(),
        insecure: false,
        ca_certificate_pem: String::new(),
        credential: CredentialRecord {
            credential_id: format!("c-{id}"),
            email: "a@b.c".into(),
            username: "u".into(),
            password: SealedSecret {
                nonce: vec![],
                ciphertext: vec![],
            },
            expire_time: expire,
            ecr: None,
        },
    }
}
