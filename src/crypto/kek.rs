//! The key-encryption key (KEK): loading or creating it, wrapping data keys under it,
//! and the subkeys derived from it for key ids and request fingerprints.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
/// Label of the subkey that keys the audit log's HMACs of user names.
const AUDIT_LABEL: &[u8] = b"registrar audit v1";
/// KDF label of the subkey whose prefix identifies the KEK.
const KEY_ID_LABEL: &[u8] = b"registrar key id v1";
/// Bytes of the key id subkey shown, hex-encoded, as the key id.
const KEY_ID_LEN: usize = 8;
/// A key file line is 45 bytes; the cap (room for 22 keys) keeps a wrong
/// file from being read whole.
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
    ///
    /// A source that holds several keys (see [`Kek::load_all`]) gives its
    /// first, current one.
    pub fn load(source: &KeySource, create_if_missing: bool) -> Result<Self> {
        let mut keys = Self::load_all(source, create_if_missing)?;
        Ok(keys.swap_remove(0))
    }

    /// Loads every key of `source`, current first: a key file holds one
    /// base64 key per line, and a value one key per line or comma-separated
    /// item. Several keys exist while a rotation is under way. Never empty.
    pub fn load_all(source: &KeySource, create_if_missing: bool) -> Result<Vec<Self>> {
        match source {
            KeySource::File(path) => load_file(path, create_if_missing),
            KeySource::Value(text) => decode_keys(text.expose_secret().as_bytes(), b",\n")
                .ok_or(Error::MalformedKey { what: "key value" }),
        }
    }

    /// Returns the 8 bytes of the key id, as a wrapped key records them.
    pub(super) fn key_id_bytes(&self) -> [u8; KEY_ID_LEN] {
        let subkey = self.derive(KEY_ID_LABEL);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&subkey[..KEY_ID_LEN]);
        id
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

    /// Returns `HMAC-SHA256(subkey, value)` with `subkey = HMAC-SHA256(kek,
    /// "registrar audit v1")`: how the audit log names a user name, so an
    /// operator holding the key can check a known value (`registrar
    /// audit-hmac`) and a reader of the log alone learns nothing.
    pub fn audit_hmac(&self, value: &[u8]) -> [u8; 32] {
        let subkey = self.derive(AUDIT_LABEL);
        let mut mac = hmac_sha256(&subkey);
        mac.update(value);
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

/// Decodes one key per item of `text`, split at any of `separators`; blank
/// items are skipped. `None` if an item is malformed, or none is there.
fn decode_keys(text: &[u8], separators: &[u8]) -> Option<Vec<Kek>> {
    let keys = text
        .split(|b| separators.contains(b))
        .filter(|item| !item.trim_ascii().is_empty())
        .map(decode_key)
        .collect::<Option<Vec<Kek>>>()?;
    (!keys.is_empty()).then_some(keys)
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

fn load_file(path: &Path, create_if_missing: bool) -> Result<Vec<Kek>> {
    match File::open(path) {
        Ok(file) => read_key_file(path, file),
        Err(err) if err.kind() == ErrorKind::NotFound && create_if_missing => {
            create_key_file(path).map(|k| vec![k])
        }
        Err(err) => Err(io_error(path)(err)),
    }
}

/// Whether a key file's mode keeps it private: only its owner may read it;
/// or, for a file root owns, also its group, read only. That second case is
/// how a service that is not root reads a key root manages: Debian's
/// `ssl-cert` group (keys `root:ssl-cert 0640`), systemd credentials, and
/// Kubernetes Secret volumes mounted with `fsGroup` (`root:<fsGroup> 0440`).
/// Never writable but by the owner, never readable by others.
pub(crate) fn private_enough(mode: u32, owner_uid: u32) -> bool {
    const GROUP_READ: u32 = 0o040;
    let granted = mode & GROUP_OTHER_BITS;
    granted == 0 || (owner_uid == 0 && granted == GROUP_READ)
}

fn read_key_file(path: &Path, mut file: File) -> Result<Vec<Kek>> {
    // Checking the open handle, not the path, so the file judged is the file read.
    let meta = file.metadata().map_err(io_error(path))?;
    if !private_enough(meta.permissions().mode(), meta.uid()) {
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
    decode_keys(&buf[..filled], b"\n").ok_or_else(|| Error::MalformedKeyFile {
        path: path.to_owned(),
    })
}

/// Puts a new key first in an existing key file, the others after it, and
/// returns the new key's id. The file is replaced atomically (a 0600 copy
/// renamed over it, then the directory synced); a running server takes the
/// new key at its next start.
pub fn add_key_to_file(path: &Path) -> Result<String> {
    let old = load_file(path, false)?;
    let new = Kek::generate();
    let id = new.key_id();
    let mut keys = vec![new];
    keys.extend(old);
    write_key_file(path, &keys)?;
    Ok(id)
}

/// Keeps only the first (current) key of a key file and returns the ids
/// of the keys taken out; the file is replaced atomically.
pub fn retire_old_keys_in_file(path: &Path) -> Result<Vec<String>> {
    let mut keys = load_file(path, false)?;
    let retired: Vec<String> = keys.drain(1..).map(|k| k.key_id()).collect();
    if !retired.is_empty() {
        write_key_file(path, &keys)?;
    }
    Ok(retired)
}

/// Writes `keys`, one base64 line each, over `path` atomically.
fn write_key_file(path: &Path, keys: &[Kek]) -> Result<()> {
    let mut text = Zeroizing::new(String::with_capacity(keys.len() * 45));
    for key in keys {
        STANDARD.encode_string(key.0.as_slice(), &mut text);
        text.push('\n');
    }
    if text.len() >= MAX_KEY_FILE_LEN {
        return Err(Error::MalformedKeyFile {
            path: path.to_owned(),
        });
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".new");
    let tmp = PathBuf::from(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_error(path))?;
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(parent))
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
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            let mut keys = load_file(path, false)?;
            return Ok(keys.swap_remove(0));
        }
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
#[path = "kek_tests.rs"]
mod tests;
