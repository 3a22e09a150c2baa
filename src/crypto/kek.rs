//! The key-encryption key (KEK): loading or creating it, wrapping data keys under it,
//! and the subkeys derived from it for key ids and request fingerprints.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::generic_array::GenericArray;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::seal::{self, DataKey, WrappedKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use super::{Error, Result};

/// Domain separation for the associated data of a wrapped data key.
const WRAP_DOMAIN: &[u8] = b"registrar/wrap/v1";
/// KDF label of the subkey that keys request fingerprints.
const FINGERPRINT_LABEL: &[u8] = b"registrar fingerprint v1";
/// KDF label of the subkey whose prefix identifies the KEK.
const KEY_ID_LABEL: &[u8] = b"registrar key id v1";
/// Bytes of the key id subkey shown, hex-encoded, as the key id.
const KEY_ID_LEN: usize = 8;
/// A valid key file is 45 bytes; the cap keeps a wrong file from being read whole.
const MAX_KEY_FILE_LEN: usize = 1024;
/// Permission bits a key file must not have: anything for group or others.
const GROUP_OTHER_BITS: u32 = 0o077;
/// The SHA-256 block size, which is HMAC-SHA256's native key size.
const HMAC_BLOCK_LEN: usize = 64;

/// Where the KEK comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A key file outside the data directory, holding one line of base64.
    File(PathBuf),
    /// The base64 text of the key itself, typically read from an environment variable.
    Value(SecretString),
}

/// The 256-bit key-encryption key that wraps every credential's data key.
///
/// It also derives subkeys with a simple, documented KDF:
/// `subkey = HMAC-SHA256(kek, label)`, with labels `"registrar key id v1"` and
/// `"registrar fingerprint v1"`. It is zeroized on drop and its `Debug` output
/// is `Kek([redacted])`.
pub struct Kek(Box<[u8; KEY_LEN]>);

impl Kek {
    /// Loads the KEK from `source`, creating a key file first if it is missing
    /// and `create_if_missing` is set.
    ///
    /// An existing key file must grant nothing to group or others. A created
    /// file gets mode 0600, and its missing parent directories mode 0700; the
    /// file and its directory are synced before the key is used. Surrounding
    /// whitespace is ignored when reading. `create_if_missing` has no effect on
    /// [`KeySource::Value`].
    pub fn load(source: &KeySource, create_if_missing: bool) -> Result<Self> {
        match source {
            KeySource::File(path) => load_file(path, create_if_missing),
            KeySource::Value(text) => decode_key(text.expose_secret().as_bytes())
                .ok_or(Error::MalformedKey { what: "key value" }),
        }
    }

    /// Generates a fresh KEK from the operating system's random source.
    pub fn generate() -> Self {
        // Boxed so moves of the key copy a pointer, not the key bytes.
        let mut bytes = Box::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut_slice());
        Self(bytes)
    }

    /// Wraps `key` for storage, bound to `credential_id` so the wrapped key
    /// cannot be moved to another credential.
    ///
    /// # Panics
    ///
    /// Panics only if `credential_id` is 4 GiB or longer.
    pub fn wrap(&self, key: &DataKey, credential_id: &str) -> WrappedKey {
        #[allow(clippy::expect_used)]
        let (nonce, ciphertext) = wrap_ad(credential_id)
            .and_then(|ad| seal::encrypt(&self.0, &ad, key.expose()))
            .expect("a 32-byte key under a credential id shorter than 4 GiB always wraps");
        let mut bytes = nonce;
        bytes.extend_from_slice(&ciphertext);
        WrappedKey(bytes)
    }

    /// Unwraps a data key, failing with [`Error::Unwrap`] unless it was wrapped
    /// by this KEK for exactly `credential_id` and has not been altered.
    pub fn unwrap_key(&self, wrapped: &WrappedKey, credential_id: &str) -> Result<DataKey> {
        if wrapped.0.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
            return Err(Error::Unwrap);
        }
        let (nonce, ciphertext) = wrapped.0.split_at(NONCE_LEN);
        let ad = wrap_ad(credential_id).ok_or(Error::Unwrap)?;
        let plaintext = seal::decrypt(&self.0, &ad, nonce, ciphertext).ok_or(Error::Unwrap)?;
        let bytes = <&[u8; KEY_LEN]>::try_from(plaintext.as_slice()).map_err(|_| Error::Unwrap)?;
        Ok(DataKey::from_bytes(bytes))
    }

    /// Unwraps a data key with this (old) KEK and wraps it again under `new`,
    /// for key rotation.
    pub fn rewrap(
        &self,
        new: &Kek,
        wrapped: &WrappedKey,
        credential_id: &str,
    ) -> Result<WrappedKey> {
        let key = self.unwrap_key(wrapped, credential_id)?;
        Ok(new.wrap(&key, credential_id))
    }

    /// Returns the KEK's public identifier: 16 hex digits, the first 8 bytes
    /// of `HMAC-SHA256(kek, "registrar key id v1")`.
    ///
    /// Stored beside wrapped keys, it lets a start with the wrong KEK be
    /// detected before any unwrap fails; it reveals nothing about the key.
    pub fn key_id(&self) -> String {
        let subkey = self.derive(KEY_ID_LABEL);
        subkey[..KEY_ID_LEN]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Checks that this KEK is the one whose key id is recorded in the data
    /// directory, failing with [`Error::KeyMismatch`] otherwise.
    pub fn check_key_id(&self, expected: &str) -> Result<()> {
        let actual = self.key_id();
        if actual == expected {
            Ok(())
        } else {
            Err(Error::KeyMismatch {
                expected: expected.to_owned(),
                actual,
            })
        }
    }

    /// Computes a keyed fingerprint of `parts` for request idempotency.
    ///
    /// It is `HMAC-SHA256(subkey, len(p1) || p1 || len(p2) || p2 ...)` with
    /// lengths as big-endian u64 and `subkey = HMAC-SHA256(kek, "registrar
    /// fingerprint v1")`, so fingerprints of requests that carry passwords
    /// cannot be brute-forced offline by someone holding only the disk.
    pub fn fingerprint(&self, parts: &[&[u8]]) -> [u8; 32] {
        let subkey = self.derive(FINGERPRINT_LABEL);
        let mut mac = hmac_sha256(&subkey);
        for part in parts {
            // The prefix keeps ["ab", "c"] and ["a", "bc"] apart.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Derives the subkey `HMAC-SHA256(kek, label)`.
    fn derive(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut mac = hmac_sha256(&self.0);
        mac.update(label);
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// Builds a KEK from a copy of raw bytes; the caller zeroizes its own buffer.
    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let mut key = Box::new([0u8; KEY_LEN]);
        key.copy_from_slice(bytes);
        Self(key)
    }
}

impl Zeroize for Kek {
    fn zeroize(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl Drop for Kek {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Kek {}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

/// Builds HMAC-SHA256 keyed with a 32-byte key.
fn hmac_sha256(key: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC zero-pads keys shorter than a block, so padding here gives the
    // standard HMAC through the infallible fixed-size constructor.
    let mut block = Zeroizing::new([0u8; HMAC_BLOCK_LEN]);
    block[..key.len()].copy_from_slice(key);
    <Hmac<Sha256> as KeyInit>::new(GenericArray::from_slice(block.as_slice()))
}

/// Encodes the associated data of a wrapped key; `None` if the id is too long.
fn wrap_ad(credential_id: &str) -> Option<Vec<u8>> {
    let mut ad = Vec::with_capacity(WRAP_DOMAIN.len() + 4 + credential_id.len());
    ad.extend_from_slice(WRAP_DOMAIN);
    seal::push_prefixed(&mut ad, credential_id.as_bytes())?;
    Some(ad)
}

/// Decodes base64 text of exactly 32 bytes, ignoring surrounding whitespace.
fn decode_key(text: &[u8]) -> Option<Kek> {
    // Room for a little more than a key, so overlong input fails on length
    // instead of being decoded into a growing, unzeroized buffer.
    let mut buf = Zeroizing::new([0u8; KEY_LEN + 16]);
    let len = STANDARD
        .decode_slice(text.trim_ascii(), buf.as_mut_slice())
        .ok()?;
    let bytes = <&[u8; KEY_LEN]>::try_from(buf.get(..len)?).ok()?;
    Some(Kek::from_bytes(bytes))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn load_file(path: &Path, create_if_missing: bool) -> Result<Kek> {
    match File::open(path) {
        Ok(file) => read_key_file(path, file),
        Err(err) if err.kind() == ErrorKind::NotFound && create_if_missing => create_key_file(path),
        Err(err) => Err(io_error(path)(err)),
    }
}

fn read_key_file(path: &Path, mut file: File) -> Result<Kek> {
    // Checking the open handle, not the path, so the file judged is the file read.
    let mode = file
        .metadata()
        .map_err(io_error(path))?
        .permissions()
        .mode();
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(Error::InsecureKeyFile {
            path: path.to_owned(),
        });
    }
    // A fixed buffer, because a growing Vec would leave unzeroized copies behind.
    let mut buf = Zeroizing::new([0u8; MAX_KEY_FILE_LEN]);
    let mut filled = 0;
    loop {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled == buf.len() {
                    return Err(Error::MalformedKeyFile {
                        path: path.to_owned(),
                    });
                }
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(io_error(path)(err)),
        }
    }
    decode_key(&buf[..filled]).ok_or_else(|| Error::MalformedKeyFile {
        path: path.to_owned(),
    })
}

fn create_key_file(path: &Path) -> Result<Kek> {
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(io_error(parent))?;

    let kek = Kek::generate();
    let mut line = Zeroizing::new(String::with_capacity(64));
    STANDARD.encode_string(kek.0.as_slice(), &mut line);
    line.push('\n');

    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        // Another process created it between our open and now; use theirs.
        Err(err) if err.kind() == ErrorKind::AlreadyExists => return load_file(path, false),
        Err(err) => return Err(io_error(path)(err)),
    };
    if let Err(err) = file
        .write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
    {
        // A half-written key file would block every later start as malformed.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(io_error(path)(err));
    }
    // Without syncing the directory, a crash could lose the file's entry while
    // data wrapped under the key survives.
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(parent))?;
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::crypto::SealContext;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn write_with_mode(path: &Path, contents: &[u8], mode: u32) {
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_wrapped_key_unwraps_under_the_same_kek_and_credential() {
        // Given a KEK and a data key that sealed a secret
        let kek = Kek::generate();
        let key = DataKey::generate();
        let ctx = SealContext {
            environment_id: "env",
            registry_id: "reg",
            credential_id: "cred-1",
            version: 1,
            field: "password",
        };
        let sealed = key.seal(&ctx, b"hunter2");

        // When the data key is wrapped and unwrapped again
        let wrapped = kek.wrap(&key, "cred-1");
        let unwrapped = kek.unwrap_key(&wrapped, "cred-1").unwrap();

        // Then it is the same key and still opens the secret
        assert_eq!(wrapped.0.len(), NONCE_LEN + KEY_LEN + TAG_LEN);
        assert_eq!(unwrapped.expose(), key.expose());
        assert_eq!(
            unwrapped.open(&ctx, &sealed).unwrap().as_slice(),
            b"hunter2"
        );
    }

    #[test]
    fn a_wrapped_key_moved_to_another_credential_does_not_unwrap() {
        // Given a data key wrapped for one credential
        let kek = Kek::generate();
        let wrapped = kek.wrap(&DataKey::generate(), "cred-1");

        // When it is unwrapped for another credential
        let result = kek.unwrap_key(&wrapped, "cred-2");

        // Then it does not authenticate
        assert!(matches!(result, Err(Error::Unwrap)));
    }

    #[test]
    fn a_wrapped_key_does_not_unwrap_under_another_kek() {
        // Given a data key wrapped under one KEK
        let wrapped = Kek::generate().wrap(&DataKey::generate(), "cred-1");

        // When another KEK unwraps it
        let result = Kek::generate().unwrap_key(&wrapped, "cred-1");

        // Then it does not authenticate
        assert!(matches!(result, Err(Error::Unwrap)));
    }

    #[test]
    fn a_tampered_or_truncated_wrapped_key_does_not_unwrap() {
        // Given a wrapped data key
        let kek = Kek::generate();
        let wrapped = kek.wrap(&DataKey::generate(), "cred-1");

        // When a bit is flipped in each byte position, or bytes are cut or added
        let mut bad: Vec<WrappedKey> = (0..wrapped.0.len())
            .map(|i| {
                let mut copy = wrapped.clone();
                copy.0[i] ^= 1;
                copy
            })
            .collect();
        bad.push(WrappedKey(wrapped.0[..wrapped.0.len() - 1].to_vec()));
        bad.push(WrappedKey([wrapped.0.as_slice(), &[0]].concat()));
        bad.push(WrappedKey(Vec::new()));

        // Then none unwraps, and none panics
        for candidate in &bad {
            assert!(matches!(
                kek.unwrap_key(candidate, "cred-1"),
                Err(Error::Unwrap)
            ));
        }
    }

    #[test]
    fn rewrapping_moves_a_key_to_the_new_kek_and_out_of_reach_of_the_old() {
        // Given a data key wrapped under the old KEK
        let old = Kek::generate();
        let new = Kek::generate();
        let key = DataKey::generate();
        let wrapped = old.wrap(&key, "cred-1");

        // When it is rewrapped under the new KEK
        let rewrapped = old.rewrap(&new, &wrapped, "cred-1").unwrap();

        // Then the new KEK unwraps the same key and the old one cannot
        assert_eq!(
            new.unwrap_key(&rewrapped, "cred-1").unwrap().expose(),
            key.expose()
        );
        assert!(matches!(
            old.unwrap_key(&rewrapped, "cred-1"),
            Err(Error::Unwrap)
        ));
        assert!(matches!(
            old.rewrap(&new, &rewrapped, "cred-1"),
            Err(Error::Unwrap)
        ));
    }

    #[test]
    fn a_missing_key_file_is_created_with_mode_0600_in_a_0700_directory() {
        // Given a key path whose directory does not exist yet
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let path = keys.join("registrar.key");

        // When the KEK is loaded with creation allowed
        let kek = Kek::load(&KeySource::File(path.clone()), true).unwrap();

        // Then the file holds one line of padded base64 of the key, private to its owner
        let contents = fs::read_to_string(&path).unwrap();
        assert_eq!(contents, format!("{}\n", STANDARD.encode(kek.0.as_slice())));
        assert_eq!(contents.len(), 45);
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&keys), 0o700);

        // And loading it again yields the same key
        let again = Kek::load(&KeySource::File(path), false).unwrap();
        assert_eq!(again.key_id(), kek.key_id());
    }

    #[test]
    fn a_missing_key_file_is_an_error_when_creation_is_not_allowed() {
        // Given a key path that does not exist
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registrar.key");

        // When the KEK is loaded without creation
        let err = Kek::load(&KeySource::File(path.clone()), false).unwrap_err();

        // Then the error names the path and nothing is created
        assert!(matches!(&err, Error::Io { source, .. } if source.kind() == ErrorKind::NotFound));
        assert!(err.to_string().contains(&path.display().to_string()));
        assert!(!path.exists());
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused_with_a_chmod_hint() {
        // Given a valid key file with mode 0644
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registrar.key");
        let key = [7u8; KEY_LEN];
        let encoded = STANDARD.encode(key);
        write_with_mode(&path, format!("{encoded}\n").as_bytes(), 0o644);

        // When the KEK is loaded
        let err = Kek::load(&KeySource::File(path.clone()), true).unwrap_err();

        // Then it is refused, naming the fix and not the key
        let message = err.to_string();
        assert!(matches!(err, Error::InsecureKeyFile { .. }));
        assert!(message.contains(&format!("chmod 600 {}", path.display())));
        assert!(!message.contains(&encoded));
    }

    #[test]
    fn a_key_file_with_surrounding_whitespace_loads() {
        // Given a key file with blank lines and spaces around the key
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registrar.key");
        let key = [9u8; KEY_LEN];
        write_with_mode(
            &path,
            format!("\n  {}  \r\n\n", STANDARD.encode(key)).as_bytes(),
            0o600,
        );

        // When the KEK is loaded
        let kek = Kek::load(&KeySource::File(path), false).unwrap();

        // Then it holds the key
        assert_eq!(kek.0.as_slice(), key.as_slice());
    }

    #[test]
    fn a_malformed_or_wrong_length_key_file_is_refused() {
        // Given key files that are short, long, not base64, unpadded, empty or huge
        let dir = tempfile::tempdir().unwrap();
        let unpadded = STANDARD
            .encode([1u8; KEY_LEN])
            .trim_end_matches('=')
            .to_owned();
        let cases: Vec<Vec<u8>> = vec![
            STANDARD.encode([1u8; 16]).into_bytes(),
            STANDARD.encode([1u8; 31]).into_bytes(),
            STANDARD.encode([1u8; 33]).into_bytes(),
            STANDARD.encode([1u8; 64]).into_bytes(),
            b"not base64 at all!".to_vec(),
            unpadded.into_bytes(),
            Vec::new(),
            vec![b'A'; MAX_KEY_FILE_LEN * 2],
        ];

        for (i, contents) in cases.iter().enumerate() {
            let path = dir.path().join(format!("key-{i}"));
            write_with_mode(&path, contents, 0o600);

            // When the KEK is loaded
            let err = Kek::load(&KeySource::File(path.clone()), true).unwrap_err();

            // Then it is refused as malformed, naming the file and not its contents
            let message = err.to_string();
            assert!(matches!(err, Error::MalformedKeyFile { .. }), "case {i}");
            assert!(message.contains(&path.display().to_string()));
            if !contents.is_empty() && contents.len() < 100 {
                assert!(!message.contains(std::str::from_utf8(contents).unwrap()));
            }
        }
    }

    #[test]
    fn a_key_given_by_value_loads_the_same_kek_as_the_file() {
        // Given the same key in a key file and as a base64 value
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registrar.key");
        let from_file = Kek::load(&KeySource::File(path.clone()), true).unwrap();
        let value = fs::read_to_string(&path).unwrap();

        // When the KEK is loaded from the value
        let from_value = Kek::load(&KeySource::Value(SecretString::from(value)), false).unwrap();

        // Then both are the same key
        assert_eq!(from_value.key_id(), from_file.key_id());
    }

    #[test]
    fn a_malformed_key_value_is_refused_without_echoing_it() {
        // Given a value that is base64 of 16 bytes
        let value = STANDARD.encode([5u8; 16]);

        // When the KEK is loaded from it
        let err =
            Kek::load(&KeySource::Value(SecretString::from(value.clone())), false).unwrap_err();

        // Then it is refused as a malformed key value
        assert!(matches!(err, Error::MalformedKey { what: "key value" }));
        assert!(!err.to_string().contains(&value));
    }

    #[test]
    fn fingerprints_are_stable_per_kek_and_differ_between_keks() {
        // Given two KEKs and one request
        let a = Kek::generate();
        let b = Kek::generate();
        let parts: &[&[u8]] = &[b"env", b"reg", b"hunter2"];

        // When the request is fingerprinted
        let first = a.fingerprint(parts);

        // Then the same KEK repeats it and another KEK does not
        assert_eq!(a.fingerprint(parts), first);
        assert_ne!(b.fingerprint(parts), first);
    }

    #[test]
    fn fingerprints_keep_part_boundaries_apart() {
        // Given one KEK
        let kek = Kek::generate();

        // When the same bytes are split into parts differently
        let ab_c = kek.fingerprint(&[b"ab", b"c"]);
        let a_bc = kek.fingerprint(&[b"a", b"bc"]);
        let abc = kek.fingerprint(&[b"abc"]);

        // Then the fingerprints differ
        assert_ne!(ab_c, a_bc);
        assert_ne!(ab_c, abc);
        assert_ne!(a_bc, abc);
    }

    #[test]
    fn the_key_id_is_16_hex_digits_stable_and_checked() {
        // Given two KEKs
        let kek = Kek::generate();
        let other = Kek::generate();

        // When their key ids are taken
        let id = kek.key_id();

        // Then the id is short hex, repeatable, and tells the KEKs apart
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(kek.key_id(), id);
        assert!(kek.check_key_id(&id).is_ok());
        let err = other.check_key_id(&id).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("the key file does not match the data directory"));
    }

    #[test]
    fn the_padded_hmac_key_gives_standard_hmac_sha256() {
        // Given a 32-byte key and a message
        let key = [0x42u8; 32];

        // When the padded constructor and the variable-length one are used
        let mut padded = hmac_sha256(&key);
        padded.update(b"message");
        let mut standard = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        standard.update(b"message");

        // Then both produce the same tag
        assert_eq!(
            padded.finalize().into_bytes(),
            standard.finalize().into_bytes()
        );
    }

    #[test]
    fn debug_output_of_a_kek_and_its_source_reveals_no_key_bytes() {
        // Given a KEK and the base64 value it was loaded from
        let value = STANDARD.encode([3u8; KEY_LEN]);
        let source = KeySource::Value(SecretString::from(value.clone()));
        let kek = Kek::load(&source, false).unwrap();

        // When both are formatted with Debug
        let kek_debug = format!("{kek:?}");
        let source_debug = format!("{source:?}");

        // Then neither shows the key in hex or base64
        assert_eq!(kek_debug, "Kek([redacted])");
        for text in [&kek_debug, &source_debug] {
            assert!(!text.contains(&hex(kek.0.as_slice())));
            assert!(!text.contains(&value));
        }
    }
}
