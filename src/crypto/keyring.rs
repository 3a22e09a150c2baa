//! The key-encryption keys in force: the current one, which wraps every new
//! data key, and the older ones a rotation still needs to unwrap theirs.
//! Wrapped keys name the key that wrapped them.

use super::kek::{Kek, KeySource};
use super::seal::{DataKey, WrappedKey};
use super::{Error, Result};

/// Marks a wrapped key that starts with the 8-byte id of its wrapping key.
/// Keys wrapped before rotation existed have no marker: 60 bytes of nonce,
/// ciphertext and tag, tried under every key.
const NAMED: u8 = 0x02;
/// Bytes of the key id a named wrapped key starts with.
const ID_LEN: usize = 8;

/// The keys in force, current first; never empty.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<Kek>,
}

impl From<Kek> for Keyring {
    fn from(key: Kek) -> Self {
        Self { keys: vec![key] }
    }
}

impl Keyring {
    /// Loads every key of `source` (see [`Kek::load_all`]), current first.
    pub fn load(source: &KeySource, create_if_missing: bool) -> Result<Self> {
        Ok(Self {
            keys: Kek::load_all(source, create_if_missing)?,
        })
    }

    /// Returns a keyring of `keys`, current first; `None` when empty.
    pub fn new(keys: Vec<Kek>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// Returns the current key, which wraps new data keys.
    pub fn current(&self) -> &Kek {
        &self.keys[0]
    }

    /// Returns the ids of the keys, current first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(Kek::key_id).collect()
    }

    /// Wraps a data key under the current key, naming it.
    pub fn wrap(&self, key: &DataKey, credential_id: &str) -> WrappedKey {
        let current = self.current();
        let inner = current.wrap(key, credential_id);
        let mut bytes = Vec::with_capacity(1 + ID_LEN + inner.0.len());
        bytes.push(NAMED);
        bytes.extend_from_slice(&current.key_id_bytes());
        bytes.extend_from_slice(&inner.0);
        WrappedKey(bytes)
    }

    /// Unwraps a data key under the key that wrapped it.
    ///
    /// A named key whose wrapping key is not held fails with
    /// [`Error::MissingKey`]; anything that does not authenticate with
    /// [`Error::Unwrap`].
    pub fn unwrap_key(&self, wrapped: &WrappedKey, credential_id: &str) -> Result<DataKey> {
        match split(wrapped) {
            Some((id, inner)) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.key_id_bytes() == id)
                    .ok_or_else(|| Error::MissingKey { key_id: hex(&id) })?;
                key.unwrap_key(&WrappedKey(inner.to_vec()), credential_id)
            }
            None => self
                .keys
                .iter()
                .find_map(|k| k.unwrap_key(wrapped, credential_id).ok())
                .ok_or(Error::Unwrap),
        }
    }

    /// Returns the id of the key that wrapped `wrapped`: named in it, or for
    /// an unnamed (older) wrapped key, the held key it unwraps under.
    pub fn wrapped_by(&self, wrapped: &WrappedKey, credential_id: &str) -> Option<String> {
        match split(wrapped) {
            Some((id, _)) => Some(hex(&id)),
            None => self
                .keys
                .iter()
                .find(|k| k.unwrap_key(wrapped, credential_id).is_ok())
                .map(Kek::key_id),
        }
    }

    /// Returns whether `wrapped` is wrapped by the current key and names it.
    pub fn is_current(&self, wrapped: &WrappedKey) -> bool {
        split(wrapped).is_some_and(|(id, _)| id == self.current().key_id_bytes())
    }

    /// Re-wraps a data key under the current key.
    pub fn rewrap(&self, wrapped: &WrappedKey, credential_id: &str) -> Result<WrappedKey> {
        let key = self.unwrap_key(wrapped, credential_id)?;
        Ok(self.wrap(&key, credential_id))
    }

    /// Checks that the key the data directory (or database) recorded as
    /// current is held: the current key, or one it replaced in a rotation.
    pub fn check_key_id(&self, recorded: &str) -> Result<()> {
        let ids = self.key_ids();
        if ids.iter().any(|id| id == recorded) {
            Ok(())
        } else {
            Err(Error::KeyMismatch {
                expected: recorded.to_owned(),
                actual: ids.join(", "),
            })
        }
    }

    /// Returns the request fingerprint under the current key (see
    /// [`Kek::fingerprint`]).
    pub fn fingerprint(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.current().fingerprint(parts)
    }

    /// Returns whether `recorded` is the fingerprint of `parts` under any
    /// held key, so a retry still matches its first call across a rotation.
    pub fn fingerprint_matches(&self, parts: &[&[u8]], recorded: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        self.keys
            .iter()
            .any(|k| bool::from(k.fingerprint(parts).as_slice().ct_eq(recorded)))
    }
}

/// Length of an unnamed wrapped key: nonce, the 32-byte key, tag.
const UNNAMED_LEN: usize = 12 + 32 + 16;

/// Splits a named wrapped key into its key id and the inner wrapped key.
///
/// Only the length tells the two forms apart: an unnamed key is 60 bytes
/// and may start with any byte (its random nonce), a named one is exactly
/// the marker, the id and an unnamed key.
fn split(wrapped: &WrappedKey) -> Option<([u8; ID_LEN], &[u8])> {
    if wrapped.0.len() != 1 + ID_LEN + UNNAMED_LEN {
        return None;
    }
    let (&marker, rest) = wrapped.0.split_first()?;
    if marker != NAMED {
        return None;
    }
    let (id, inner) = rest.split_at(ID_LEN);
    Some((id.try_into().ok()?, inner))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key of 32 bytes of `byte`, through the key-value format.
    fn fixed(byte: u8) -> Kek {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        Kek::load(&KeySource::Value(secrecy::SecretString::from(text)), false).unwrap()
    }

    #[test]
    fn new_keys_are_named_and_unwrap_after_a_rotation_until_the_old_key_goes() {
        let old = Keyring::from(fixed(1));
        let data = DataKey::generate();
        let wrapped = old.wrap(&data, "c1");
        assert!(old.is_current(&wrapped));
        let old_id = old.key_ids()[0].clone();
        assert_eq!(old.wrapped_by(&wrapped, "c1"), Some(old_id.clone()));

        // A rotation: a new current key, the old one kept after it.
        let rotated = Keyring::new(vec![fixed(2), fixed(1)]).unwrap();
        let new_id = rotated.key_ids()[0].clone();
        assert!(!rotated.is_current(&wrapped));
        assert_eq!(
            rotated.unwrap_key(&wrapped, "c1").unwrap().expose(),
            data.expose()
        );
        let rewrapped = rotated.rewrap(&wrapped, "c1").unwrap();
        assert!(rotated.is_current(&rewrapped));
        assert_eq!(rotated.wrapped_by(&rewrapped, "c1"), Some(new_id));
        rotated.check_key_id(&old_id).unwrap();

        // The old key alone opens nothing re-wrapped, and says which key it lacks.
        assert!(matches!(
            old.unwrap_key(&rewrapped, "c1"),
            Err(Error::MissingKey { .. })
        ));
        assert!(matches!(
            old.check_key_id("0000000000000000"),
            Err(Error::KeyMismatch { .. })
        ));
    }

    #[test]
    fn a_value_may_hold_several_keys_current_first() {
        use base64::Engine as _;
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        let text = format!("{}, {}\n", b64(2), b64(1));
        let ring =
            Keyring::load(&KeySource::Value(secrecy::SecretString::from(text)), false).unwrap();
        assert_eq!(ring.key_ids(), [fixed(2).key_id(), fixed(1).key_id()]);
    }

    #[test]
    fn unnamed_wrapped_keys_of_before_rotation_still_unwrap() {
        let kek = Kek::generate();
        let data = DataKey::generate();
        let legacy = kek.wrap(&data, "c1");
        let ring = Keyring::new(vec![Kek::generate(), kek]).unwrap();
        assert!(!ring.is_current(&legacy));
        assert_eq!(
            ring.unwrap_key(&legacy, "c1").unwrap().expose(),
            data.expose()
        );
        assert_eq!(
            ring.wrapped_by(&legacy, "c1"),
            Some(ring.key_ids()[1].clone())
        );
        assert!(matches!(ring.unwrap_key(&legacy, "c2"), Err(Error::Unwrap)));
    }

    #[test]
    fn an_unnamed_key_whose_nonce_starts_like_a_name_still_unwraps() {
        let kek = fixed(3);
        let ring = Keyring::new(vec![fixed(4), fixed(3)]).unwrap();
        let data = DataKey::generate();
        // One unnamed wrapped key in 256 starts with the marker byte.
        let legacy = (0..100_000)
            .map(|_| kek.wrap(&data, "c1"))
            .find(|w| w.0[0] == NAMED)
            .expect("a nonce starting with the marker within 100,000 tries");
        assert_eq!(legacy.0.len(), UNNAMED_LEN);
        assert_eq!(
            ring.unwrap_key(&legacy, "c1").unwrap().expose(),
            data.expose()
        );
        assert_eq!(ring.wrapped_by(&legacy, "c1"), Some(fixed(3).key_id()));
        assert!(!ring.is_current(&legacy));
    }

    #[test]
    fn fingerprints_of_an_older_key_still_match() {
        let old = Kek::generate();
        let recorded = old.fingerprint(&[b"req"]);
        let ring = Keyring::new(vec![Kek::generate(), old]).unwrap();
        assert_ne!(ring.fingerprint(&[b"req"]), recorded);
        assert!(ring.fingerprint_matches(&[b"req"], &recorded));
        assert!(!ring.fingerprint_matches(&[b"other"], &recorded));
    }
}
