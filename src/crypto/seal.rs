//! Per-credential data keys and AES-256-GCM sealing of secrets bound to their context.
//! Also owns the wrapped form of a data key and the AEAD helpers `kek` wraps with.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{Error, Result};
use crate::domain::credential::{SealedSecret, SecretContext};

/// Length in bytes of every symmetric key in this module (AES-256).
pub(super) const KEY_LEN: usize = 32;
/// Length in bytes of an AES-GCM nonce.
pub(super) const NONCE_LEN: usize = 12;
/// Length in bytes of an AES-GCM authentication tag.
pub(super) const TAG_LEN: usize = 16;

/// Domain separation keeps a seal's associated data from ever equalling that of
/// another use of the same primitives, even if keys were mixed up.
const SEAL_DOMAIN: &[u8] = b"registrar/seal/v1";

/// A random 256-bit key that encrypts the secrets of exactly one credential.
///
/// It is zeroized on drop, is not `Clone` so copies stay deliberate, and its
/// `Debug` output is `DataKey([redacted])`.
pub struct DataKey(Box<[u8; KEY_LEN]>);

/// A data key encrypted under the KEK, laid out as `nonce || ciphertext || tag`.
///
/// `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(pub Vec<u8>);

impl DataKey {
    /// Generates a fresh data key from the operating system's random source.
    pub fn generate() -> Self {
        // Boxed so moves of the key copy a pointer, not the key bytes.
        let mut bytes = Box::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut_slice());
        Self(bytes)
    }

    /// Builds a data key from a copy of raw bytes; the caller zeroizes its own buffer.
    pub(super) fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let mut key = Box::new([0u8; KEY_LEN]);
        key.copy_from_slice(bytes);
        Self(key)
    }

    /// Exposes the raw key bytes to the wrapping code.
    pub(super) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Seals `plaintext` under this key, bound to `ctx`, with a fresh random nonce.
    ///
    /// # Panics
    ///
    /// Panics only if an input exceeds AES-GCM's limits (a context string of
    /// 4 GiB or more, or 64 GiB of plaintext); use [`DataKey::try_seal`] where
    /// such sizes could come from outside.
    pub fn seal(&self, ctx: &SecretContext<'_>, plaintext: &[u8]) -> SealedSecret {
        #[allow(clippy::expect_used)]
        self.try_seal(ctx, plaintext)
            .expect("inputs within AES-GCM limits always seal")
    }

    /// Seals `plaintext` like [`DataKey::seal`], but reports oversized inputs as an error.
    pub fn try_seal(&self, ctx: &SecretContext<'_>, plaintext: &[u8]) -> Result<SealedSecret> {
        let ad = seal_ad(ctx).ok_or(Error::TooLong)?;
        let (nonce, ciphertext) = encrypt(&self.0, &ad, plaintext).ok_or(Error::TooLong)?;
        Ok(SealedSecret { nonce, ciphertext })
    }

    /// Opens a sealed secret, failing with [`Error::Unseal`] unless it was sealed
    /// under this key and exactly this context and has not been altered.
    pub fn open(
        &self,
        ctx: &SecretContext<'_>,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<Vec<u8>>> {
        // A context too long to encode cannot have been used for sealing.
        let ad = seal_ad(ctx).ok_or(Error::Unseal)?;
        decrypt(&self.0, &ad, &sealed.nonce, &sealed.ciphertext).ok_or(Error::Unseal)
    }
}

impl Zeroize for DataKey {
    fn zeroize(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for DataKey {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("len", &self.0.len())
            .finish()
    }
}

/// Encodes the associated data of a seal; `None` if a string is too long to prefix.
///
/// Every string is length-prefixed so that, for example, registry "ab" with
/// credential "c" can never encode like registry "a" with credential "bc".
fn seal_ad(ctx: &SecretContext<'_>) -> Option<Vec<u8>> {
    let strings = [
        ctx.environment_id,
        ctx.registry_id,
        ctx.credential_id,
        ctx.field,
    ];
    let len = SEAL_DOMAIN.len() + strings.iter().map(|s| 4 + s.len()).sum::<usize>() + 8;
    let mut ad = Vec::with_capacity(len);
    ad.extend_from_slice(SEAL_DOMAIN);
    for s in strings {
        push_prefixed(&mut ad, s.as_bytes())?;
    }
    ad.extend_from_slice(&ctx.version.to_be_bytes());
    Some(ad)
}

/// Appends `bytes` to `buf` behind its length as a big-endian u32; `None` if too long.
pub(super) fn push_prefixed(buf: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    let len = u32::try_from(bytes.len()).ok()?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
    Some(())
}

/// Encrypts with AES-256-GCM under a fresh random nonce, returning `(nonce, ciphertext)`.
///
/// `None` only when the inputs exceed AES-GCM's length limits.
pub(super) fn encrypt(
    key: &[u8; KEY_LEN],
    ad: &[u8],
    plaintext: &[u8],
) -> Option<(Vec<u8>, Vec<u8>)> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    // Random nonces are safe here: a data key seals only a handful of fields and
    // the KEK wraps far fewer than the 2^32 messages the birthday bound allows.
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .ok()?;
    Some((nonce.to_vec(), ciphertext))
}

/// Decrypts and authenticates AES-256-GCM output; `None` on any failure.
pub(super) fn decrypt(
    key: &[u8; KEY_LEN],
    ad: &[u8],
    nonce: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    // `Nonce::from_slice` panics on a wrong length, and stored data is untrusted.
    if nonce.len() != NONCE_LEN {
        return None;
    }
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: ad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    use super::*;

    fn context() -> SecretContext<'static> {
        SecretContext {
            environment_id: "env-1",
            registry_id: "reg-1",
            credential_id: "cred-1",
            version: 3,
            field: "password",
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_sealed_secret_opens_to_its_plaintext_under_the_same_key_and_context() {
        // Given a data key and a context
        let key = DataKey::generate();
        let ctx = context();

        // When a secret is sealed and opened again
        let sealed = key.seal(&ctx, b"hunter2");
        let opened = key.open(&ctx, &sealed).unwrap();

        // Then the plaintext comes back and the ciphertext does not contain it
        assert_eq!(opened.as_slice(), b"hunter2");
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert_eq!(sealed.ciphertext.len(), b"hunter2".len() + TAG_LEN);
        assert!(!sealed
            .ciphertext
            .windows(7)
            .any(|w| w == b"hunter2".as_slice()));
    }

    #[test]
    fn sealing_the_same_secret_twice_uses_fresh_nonces() {
        // Given a data key and a context
        let key = DataKey::generate();
        let ctx = context();

        // When the same secret is sealed twice
        let first = key.seal(&ctx, b"hunter2");
        let second = key.seal(&ctx, b"hunter2");

        // Then neither the nonces nor the ciphertexts repeat
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }

    #[test]
    fn opening_with_any_changed_context_field_fails() {
        // Given a secret sealed in one context
        let key = DataKey::generate();
        let ctx = context();
        let sealed = key.seal(&ctx, b"hunter2");

        // When it is opened with each field of the context changed
        let changed = [
            SecretContext {
                environment_id: "env-2",
                ..ctx
            },
            SecretContext {
                registry_id: "reg-2",
                ..ctx
            },
            SecretContext {
                credential_id: "cred-2",
                ..ctx
            },
            SecretContext { version: 4, ..ctx },
            SecretContext {
                field: "username",
                ..ctx
            },
        ];

        // Then every attempt fails to authenticate
        for other in changed {
            assert!(
                matches!(key.open(&other, &sealed), Err(Error::Unseal)),
                "{other:?} must not open"
            );
        }
    }

    #[test]
    fn moving_bytes_between_adjacent_context_strings_does_not_open() {
        // Given a secret sealed with registry "ab" and credential "c"
        let key = DataKey::generate();
        let ctx = SecretContext {
            registry_id: "ab",
            credential_id: "c",
            ..context()
        };
        let sealed = key.seal(&ctx, b"hunter2");

        // When it is opened with registry "a" and credential "bc"
        let shifted = SecretContext {
            registry_id: "a",
            credential_id: "bc",
            ..ctx
        };

        // Then the length prefixes keep the two contexts apart
        assert!(matches!(key.open(&shifted, &sealed), Err(Error::Unseal)));
    }

    #[test]
    fn tampered_ciphertext_or_nonce_fails_to_open() {
        // Given a sealed secret
        let key = DataKey::generate();
        let ctx = context();
        let sealed = key.seal(&ctx, b"hunter2");

        // When one bit of the ciphertext, of the tag or of the nonce is flipped,
        // or the nonce has the wrong length
        let mut body = sealed.clone();
        body.ciphertext[0] ^= 1;
        let mut tag = sealed.clone();
        if let Some(last) = tag.ciphertext.last_mut() {
            *last ^= 0x80;
        }
        let mut nonce = sealed.clone();
        nonce.nonce[0] ^= 1;
        let mut short = sealed.clone();
        short.nonce.pop();

        // Then none of them opens, and none panics
        for bad in [body, tag, nonce, short] {
            assert!(matches!(key.open(&ctx, &bad), Err(Error::Unseal)));
        }
    }

    #[test]
    fn opening_with_another_data_key_fails() {
        // Given a secret sealed under one data key
        let ctx = context();
        let sealed = DataKey::generate().seal(&ctx, b"hunter2");

        // When another data key opens it
        let result = DataKey::generate().open(&ctx, &sealed);

        // Then it does not authenticate, and the message says so without secrets
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            "ciphertext does not authenticate under this key and context"
        );
    }

    #[test]
    fn debug_output_of_keys_and_sealed_data_reveals_no_bytes() {
        // Given a data key and a secret sealed under it
        let key = DataKey::generate();
        let sealed = key.seal(&context(), b"hunter2");
        let wrapped = WrappedKey(sealed.ciphertext.clone());

        // When they are formatted with Debug
        let key_debug = format!("{key:?}");
        let sealed_debug = format!("{sealed:?}");
        let wrapped_debug = format!("{wrapped:?}");

        // Then the key is redacted and the sealed forms show lengths only
        assert_eq!(key_debug, "DataKey([redacted])");
        assert!(!key_debug.contains(&hex(key.expose())));
        assert!(!key_debug.contains(&STANDARD.encode(key.expose())));
        assert_eq!(sealed_debug, "SealedSecret(23 bytes)");
        assert!(!sealed_debug.contains(&hex(&sealed.ciphertext)));
        assert_eq!(wrapped_debug, "WrappedKey { len: 23 }");
    }

    #[test]
    fn a_zeroized_data_key_holds_only_zero_bytes() {
        // Given a fresh data key
        let mut key = DataKey::generate();
        assert_ne!(key.expose(), &[0u8; KEY_LEN]);

        // When it is zeroized
        key.zeroize();

        // Then its bytes are gone
        assert_eq!(key.expose(), &[0u8; KEY_LEN]);
    }
}
