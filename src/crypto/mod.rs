//! Envelope encryption for stored registry passwords: per-credential data keys,
//! the key-encryption key (KEK) that wraps them, and keyed fingerprints.
//! Owns the module's error type; the primitives live in `seal` and `kek`.

mod kek;
mod keyring;
mod seal;
mod unchecked;

use std::path::PathBuf;

pub use kek::{add_key_to_file, retire_old_keys_in_file, Kek, KeySource};
pub use keyring::Keyring;
pub use seal::{DataKey, WrappedKey};
pub use unchecked::Unchecked;

/// An error raised while loading keys or opening sealed data.
///
/// Messages name paths and what went wrong, never key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key file or its directory could not be read, created or synced.
    #[error("cannot access {path}: {source}", path = path.display())]
    Io {
        /// The file or directory that failed.
        path: PathBuf,
        /// The underlying operating-system error.
        source: std::io::Error,
    },
    /// An existing key file grants permissions to group or others (beyond
    /// the group read a root-owned file may grant).
    #[error(
        "key file {path} is accessible by group or others; run `chmod 600 {path}` and start again (a file root owns may also be `chmod 640`, read by its group)",
        path = path.display()
    )]
    InsecureKeyFile {
        /// The offending key file.
        path: PathBuf,
    },
    /// A key file does not hold one line of standard base64 encoding 32 bytes.
    #[error(
        "key file {path} is malformed: expected one or more lines (at most 22), each standard base64 encoding exactly 32 bytes; the first is the current key",
        path = path.display()
    )]
    MalformedKeyFile {
        /// The malformed key file.
        path: PathBuf,
    },
    /// A key given by value (or another key-shaped input) is not what it should be.
    #[error("malformed {what}: expected standard base64 encoding exactly 32 bytes")]
    MalformedKey {
        /// What was malformed, for example "key value".
        what: &'static str,
    },
    /// A sealed secret failed authentication, so it was tampered with or opened
    /// with the wrong data key or context.
    #[error("ciphertext does not authenticate under this key and context")]
    Unseal,
    /// A wrapped data key failed authentication, so it was tampered with or
    /// unwrapped with the wrong KEK or credential id.
    #[error("wrapped data key does not authenticate under this key-encryption key and credential")]
    Unwrap,
    /// Inputs exceed what AES-GCM can encrypt under one nonce.
    #[error("input too long to seal")]
    TooLong,
    /// The loaded KEK is not the one the stored data was wrapped with.
    #[error(
        "the key file does not match the data directory (key id {actual}, data directory expects {expected})"
    )]
    KeyMismatch {
        /// The key id recorded beside the stored wrapped keys.
        expected: String,
        /// The key ids loaded, current first.
        actual: String,
    },
    /// A stored data key is wrapped by a key the key file no longer holds.
    #[error(
        "data keys are wrapped by key {key_id}, which the key file does not hold: put that key back \
         (after the current one) and run `registrar key rewrap` before removing it"
    )]
    MissingKey {
        /// The id of the missing key-encryption key.
        key_id: String,
    },
}

/// The result type of this module, defaulting to its [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
