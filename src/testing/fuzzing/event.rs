//! Log records and event payloads.

use prost::Message;

use crate::domain::state::State;
use crate::store::{codec, payload, Envelope};

/// Log records and event payloads: arbitrary bytes never panic the codec or
/// the payload decoder; a verified record is bound to its position; canonical
/// records re-encode byte for byte; decoded events survive a re-encoding.
pub fn event(data: &[u8]) {
    let plain = Envelope::decode(data);
    let position = plain.as_ref().map_or(0, |env| env.position);
    let verified = codec::decode_verified(data, position);
    if plain.is_err() {
        assert!(verified.is_err(), "undecodable bytes verified");
    }
    assert!(
        codec::decode_verified(data, position.wrapping_add(1)).is_err(),
        "a record verified at two positions"
    );
    if let Ok(env) = &verified {
        check_record(data, env);
    }
    // The payload decoder sees only verified records, but the checksum is no
    // schema: decode every envelope, so that the fuzzer need not forge CRCs.
    if let Ok(env) = plain {
        check_payload(&env);
    }
}

fn check_record(data: &[u8], env: &Envelope) {
    let body = &data[..data.len() - 5];
    assert_eq!(env.crc32c, Some(crc32c::crc32c(body)), "stored checksum");
    let mut canonical = env.clone();
    let record = codec::encode(&mut canonical);
    assert_eq!(
        codec::decode_verified(&record, env.position).as_ref().ok(),
        Some(&canonical),
        "re-encoded record"
    );
    assert_eq!(
        Envelope {
            crc32c: None,
            ..canonical.clone()
        },
        Envelope {
            crc32c: None,
            ..env.clone()
        },
        "re-encoding changed a field"
    );
    // Protobuf admits several encodings of one envelope (field order, repeats,
    // unknown fields); only the one `encode` writes must come back unchanged.
    let is_canonical = Envelope {
        crc32c: None,
        ..env.clone()
    }
    .encode_to_vec()
        == body;
    if is_canonical {
        assert_eq!(record, data, "a canonical record re-encoded differently");
    }
}

fn check_payload(env: &Envelope) {
    let Ok(recorded) = payload::decode(env) else {
        return;
    };
    assert_eq!(recorded.position, env.position);
    assert_eq!(recorded.stream, env.stream);
    assert_eq!(recorded.event.event_type(), env.event_type);
    let new = payload::encode(&recorded.event);
    assert_eq!(new.event_type, env.event_type);
    assert_eq!(new.schema_version, payload::SCHEMA_VERSION);
    let again = payload::decode(&Envelope {
        payload: new.payload,
        ..env.clone()
    })
    .unwrap_or_else(|e| panic!("re-encoded {} does not decode: {e}", env.event_type));
    assert_eq!(again, recorded, "{} changed on re-encoding", env.event_type);
    // The fold takes any decoded event, as replay would.
    State::default().apply(&recorded);
}
