//! The record format: an `Envelope` encoded with its CRC32C as the last field,
//! and the verification that checks the CRC before trusting any decoded byte.

use prost::Message;

use super::{Envelope, Error, Result};

/// The key of `crc32c`: field 15, wire type 5 (fixed32).
const CRC_TAG: u8 = (15 << 3) | 5;
/// The tag byte and the four little-endian CRC bytes that end every record.
const CRC_FIELD_LEN: usize = 5;

/// Encodes an envelope as a record, setting its `crc32c`.
///
/// The CRC covers the encoding without the field; since prost writes fields in
/// tag order and 15 is the highest tag, the record is exactly those bytes
/// followed by the field, which is also `env`'s own encoding afterwards.
pub fn encode(env: &mut Envelope) -> Vec<u8> {
    env.crc32c = None;
    let mut bytes = env.encode_to_vec();
    let crc = crc32c::crc32c(&bytes);
    env.crc32c = Some(crc);
    bytes.reserve_exact(CRC_FIELD_LEN);
    bytes.push(CRC_TAG);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Verifies a record's CRC, then decodes it and checks it holds `expected_position`.
///
/// The CRC is checked over the raw bytes before decoding, so a torn or flipped
/// record is reported as corrupt instead of decoding into plausible fields.
pub fn decode_verified(bytes: &[u8], expected_position: u64) -> Result<Envelope> {
    let corrupt = |reason: String| Error::Corrupt {
        position: expected_position,
        reason,
    };
    let Some(split) = bytes.len().checked_sub(CRC_FIELD_LEN) else {
        return Err(corrupt(format!(
            "record of {} bytes is shorter than its checksum",
            bytes.len()
        )));
    };
    let (body, field) = bytes.split_at(split);
    if field[0] != CRC_TAG {
        return Err(corrupt("record does not end with its checksum".into()));
    }
    let stored = u32::from_le_bytes([field[1], field[2], field[3], field[4]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(corrupt(format!(
            "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    let env =
        Envelope::decode(bytes).map_err(|e| corrupt(format!("record does not decode: {e}")))?;
    if env.crc32c != Some(stored) {
        return Err(corrupt("record holds a second checksum field".into()));
    }
    if env.position != expected_position {
        return Err(corrupt(format!(
            "record holds position {} instead",
            env.position
        )));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn envelope(position: u64, payload: Vec<u8>) -> Envelope {
        Envelope {
            event_type: "registry.created".into(),
            schema_version: 1,
            stream: "reg/e1/docker.io".into(),
            stream_version: 3,
            position,
            time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            actor: "system".into(),
            request_id: "r-1".into(),
            request_fingerprint: vec![9; 32],
            commit_size: 2,
            payload,
            crc32c: None,
        }
    }

    #[test]
    fn record_is_the_plain_encoding_followed_by_the_crc_field() {
        let mut env = envelope(7, b"payload".to_vec());
        let plain = env.encode_to_vec();
        let record = encode(&mut env);
        let crc = crc32c::crc32c(&plain);
        assert_eq!(env.crc32c, Some(crc));
        assert_eq!(&record[..plain.len()], &plain[..]);
        assert_eq!(record[plain.len()], 0x7D);
        assert_eq!(&record[plain.len() + 1..], &crc.to_le_bytes());
        assert_eq!(record, env.encode_to_vec());
    }

    #[test]
    fn empty_envelope_round_trips() {
        let mut env = Envelope::default();
        let record = encode(&mut env);
        assert_eq!(record.len(), CRC_FIELD_LEN);
        assert_eq!(decode_verified(&record, 0).unwrap(), env);
    }

    #[test]
    fn wrong_position_is_corrupt() {
        let record = encode(&mut envelope(7, vec![]));
        let err = decode_verified(&record, 8).unwrap_err();
        assert!(matches!(err, Error::Corrupt { position: 8, .. }), "{err}");
        assert!(err.to_string().contains("restore the data directory"));
    }

    #[test]
    fn record_without_trailing_crc_is_corrupt() {
        let env = envelope(7, b"x".to_vec());
        let err = decode_verified(&env.encode_to_vec(), 7).unwrap_err();
        assert!(matches!(err, Error::Corrupt { position: 7, .. }), "{err}");
        let err = decode_verified(&[0x7D, 1], 7).unwrap_err();
        assert!(err.to_string().contains("shorter than its checksum"));
    }

    proptest! {
        #[test]
        fn records_round_trip(position in 1u64.., payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut env = envelope(position, payload);
            let record = encode(&mut env);
            prop_assert_eq!(decode_verified(&record, position).unwrap(), env);
        }

        #[test]
        fn any_changed_byte_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            index in any::<prop::sample::Index>(),
            xor in 1u8..,
        ) {
            let mut record = encode(&mut envelope(42, payload));
            let i = index.index(record.len());
            record[i] ^= xor;
            prop_assert!(decode_verified(&record, 42).is_err());
        }

        #[test]
        fn any_truncation_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            index in any::<prop::sample::Index>(),
        ) {
            let record = encode(&mut envelope(42, payload));
            let cut = index.index(record.len());
            prop_assert!(decode_verified(&record[..cut], 42).is_err());
        }
    }
}
