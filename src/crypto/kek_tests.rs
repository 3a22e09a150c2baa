//! Tests of `kek.rs`.

use std::fs;

use super::*;
use crate::domain::credential::SecretContext;

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
    let ctx = SecretContext {
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
    let err = Kek::load(&KeySource::Value(SecretString::from(value.clone())), false).unwrap_err();

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

#[test]
fn only_a_root_owned_key_file_may_be_read_by_its_group() {
    use crate::crypto::kek::private_enough;
    // The owner alone: always.
    assert!(private_enough(0o100600, 1000));
    assert!(private_enough(0o100400, 0));
    // Group read of a file root owns (ssl-cert, Kubernetes fsGroup).
    assert!(private_enough(0o100640, 0));
    assert!(private_enough(0o100440, 0));
    // Group read of a file another user owns, anything for others, or
    // group write: never.
    assert!(!private_enough(0o100640, 1000));
    assert!(!private_enough(0o100604, 0));
    assert!(!private_enough(0o100660, 0));
    assert!(!private_enough(0o100644, 0));
    assert!(!private_enough(0o100650, 0));
}
