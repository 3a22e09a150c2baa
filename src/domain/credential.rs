//! Credentials (R6): email, username and a write-only secret, with the checks
//! About 550 lines, most of them the GCR and ECR key checks with their
//! tests: one concept, kept whole.

use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

use super::address::RegistryKind;
use super::error::{Error, Result};

/// Longest accepted password; a GCR key is held to `MAX_GCR_KEY_LEN`.
pub const MAX_PASSWORD_LEN: usize = 8 * 1024;
/// Longest accepted GCR service-account JSON key (R6).
pub const MAX_GCR_KEY_LEN: usize = 8 * 1024;
/// Longest accepted email and username.
pub const MAX_NAME_LEN: usize = 256;
/// The username GCR and Artifact Registry expect with a JSON key.
pub const GCR_JSON_KEY_USER: &str = "_json_key";
/// The username for a base64-encoded JSON key; stored decoded as `_json_key`.
pub const GCR_JSON_KEY_BASE64_USER: &str = "_json_key_base64";

/// A credential as a caller submits it, before it is sealed.
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// Contact email of the credential's owner.
    pub email: String,
    /// Registry username.
    pub username: String,
    /// Registry password or key; never printed.
    pub password: SecretString,
    /// When the credential stops being handed out (R13).
    pub expire_time: Option<SystemTime>,
    /// IAM access keys, for an ECR registry whose token registrar fetches (R14).
    pub ecr: Option<NewEcrKeys>,
}

/// IAM access keys of an ECR registry, as a caller submits them (R14).
#[derive(Debug, Clone)]
pub struct NewEcrKeys {
    /// The access key id, e.g. `AKIAIOSFODNN7EXAMPLE`; not a secret.
    pub access_key_id: String,
    /// The secret access key; never printed.
    pub secret_access_key: SecretString,
}

/// IAM access keys as the log records them: the secret key sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrKeysRecord {
    /// The access key id.
    pub access_key_id: String,
    /// The sealed secret access key.
    pub secret_access_key: SealedSecret,
}

/// The username of ECR tokens.
pub const ECR_USER: &str = "AWS";

/// A secret in its stored form: AES-256-GCM ciphertext under the
/// credential's data key, bound to its environment, registry, credential and
/// version.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The 96-bit nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.ciphertext.len())
    }
}

/// A credential as the log records it: the secret is sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Random id; a new one whenever the credential changes.
    pub credential_id: String,
    /// Contact email.
    pub email: String,
    /// Registry username.
    pub username: String,
    /// The sealed password or key.
    pub password: SealedSecret,
    /// When the credential stops being handed out (R13).
    pub expire_time: Option<SystemTime>,
    /// IAM access keys, when registrar fetches this ECR registry's token;
    /// the password is then the current token (empty before the first).
    pub ecr: Option<Box<EcrKeysRecord>>,
}

impl CredentialRecord {
    /// Returns whether the credential may be handed out at `now`: it has a
    /// secret (an ECR registry may still wait for its first token) and has
    /// not expired (R13).
    pub fn usable(&self, now: SystemTime) -> bool {
        let has_secret = !(self.ecr.is_some() && self.password.ciphertext.is_empty());
        has_secret && self.expire_time.is_none_or(|t| t > now)
    }
}

/// What binds a sealed secret to its place (DESIGN §4); the associated data.
#[derive(Debug, Clone, Copy)]
pub struct SecretContext<'a> {
    /// The environment of the registry.
    pub environment_id: &'a str,
    /// The registry.
    pub registry_id: &'a str,
    /// The credential.
    pub credential_id: &'a str,
    /// The registry stream version of the event that carries the secret.
    pub version: u64,
    /// Which secret of the credential, e.g. `password`.
    pub field: &'a str,
}

/// Seals secrets for `decide`; the app provides it with real keys.
pub trait Sealer {
    /// Seals `secret` for `context`, creating the credential's data key on
    /// its first use.
    fn seal(&mut self, context: SecretContext<'_>, secret: &SecretString) -> SealedSecret;
}

fn check_text(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_NAME_LEN} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if value != value.trim() {
        return Err(Error::invalid(
            field,
            "must not start or end with whitespace",
        ));
    }
    Ok(())
}

/// Checks an email: required, printable, one `@` with text on both sides.
pub fn check_email(email: &str) -> Result<()> {
    check_text("email", email)?;
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(Error::invalid(
            "email",
            "must be an address like name@example.com",
        )),
    }
}

/// Checks a username: required, printable.
pub fn check_username(username: &str) -> Result<()> {
    check_text("username", username)
}

/// Checks a password without ever echoing it.
pub fn check_password(password: &SecretString) -> Result<()> {
    let p = password.expose_secret();
    if p.is_empty() {
        return Err(Error::invalid("password", "is required"));
    }
    if p.len() > MAX_PASSWORD_LEN {
        return Err(Error::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_LEN} bytes"),
        ));
    }
    Ok(())
}

impl NewCredential {
    /// Validates the credential for a registry of `kind` and returns it in
    /// the form it is stored in: a GCR `_json_key_base64` key is decoded and
    /// kept as `_json_key`.
    pub fn validate(self, kind: RegistryKind, now: SystemTime) -> Result<Self> {
        if let Some(keys) = self.ecr.clone() {
            return self.validate_ecr_keys(kind, keys);
        }
        check_email(&self.email)?;
        check_username(&self.username)?;
        check_password(&self.password)?;
        if let Some(expire) = self.expire_time {
            if expire <= now {
                return Err(Error::invalid("expire_time", "must be in the future"));
            }
        }
        if kind != RegistryKind::Gcr {
            return Ok(self);
        }
        let key = match self.username.as_str() {
            GCR_JSON_KEY_USER => self.password,
            GCR_JSON_KEY_BASE64_USER => decode_base64_key(&self.password)?,
            _ => {
                return Err(Error::invalid(
                    "username",
                    "a GCR registry's username is _json_key (or _json_key_base64)",
                ))
            }
        };
        check_gcr_key(&key)?;
        Ok(Self {
            username: GCR_JSON_KEY_USER.to_owned(),
            password: key,
            ..self
        })
    }
}

impl NewCredential {
    /// Validates an ECR credential given as access keys: the username is
    /// `AWS`, the email optional, and the token comes later (R14).
    fn validate_ecr_keys(self, kind: RegistryKind, keys: NewEcrKeys) -> Result<Self> {
        if kind != RegistryKind::Ecr {
            return Err(Error::invalid(
                "ecr",
                "only ECR registries take access keys",
            ));
        }
        if !self.password.expose_secret().is_empty() {
            return Err(Error::invalid(
                "password",
                "give either ECR access keys or a token as the password, not both",
            ));
        }
        if !self.username.is_empty() && self.username != ECR_USER {
            return Err(Error::invalid(
                "username",
                "an ECR registry's username is AWS (or empty)",
            ));
        }
        if !self.email.is_empty() {
            check_email(&self.email)?;
        }
        if self.expire_time.is_some() {
            return Err(Error::invalid(
                "expire_time",
                "an ECR registry with access keys gets its expiry from each token",
            ));
        }
        keys.check()?;
        Ok(Self {
            username: ECR_USER.to_owned(),
            ecr: Some(keys),
            ..self
        })
    }
}

impl NewEcrKeys {
    /// Checks the keys' shape without echoing the secret. Temporary keys
    /// (`ASIA…`) are refused: they need a session token and expire.
    pub fn check(&self) -> Result<()> {
        let id = &self.access_key_id;
        let id_ok = (16..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !id_ok {
            return Err(Error::invalid(
                "ecr.access_key_id",
                "must be an IAM access key id (16 to 128 upper-case letters and digits, like AKIA...)",
            ));
        }
        if id.starts_with("ASIA") {
            return Err(Error::invalid(
                "ecr.access_key_id",
                "temporary (ASIA...) keys expire and need a session token: give a long-lived IAM user key",
            ));
        }
        let secret = self.secret_access_key.expose_secret();
        if secret.is_empty() {
            return Err(Error::invalid("ecr.secret_access_key", "is required"));
        }
        if secret.len() > 128 || secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                "ecr.secret_access_key",
                "must be an IAM secret access key (at most 128 printable characters)",
            ));
        }
        Ok(())
    }
}

fn decode_base64_key(password: &SecretString) -> Result<SecretString> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(password.expose_secret().trim())
        .map_err(|_| Error::invalid("password", "a _json_key_base64 password must be base64"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::invalid("password", "the decoded key must be UTF-8 JSON"))?;
    Ok(SecretString::from(text))
}

/// Checks a GCR service-account JSON key (R6) without echoing any of it.
pub fn check_gcr_key(key: &SecretString) -> Result<()> {
    let text = key.expose_secret();
    if text.len() > MAX_GCR_KEY_LEN {
        return Err(Error::invalid(
            "password",
            format!("a GCR JSON key must be at most {MAX_GCR_KEY_LEN} bytes"),
        ));
    }
    // The parse error of serde_json quotes input, so it is not passed on.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        Error::invalid(
            "password",
            "a GCR password must be a service-account JSON key",
        )
    })?;
    let object = value.as_object().ok_or_else(|| {
        Error::invalid(
            "password",
            "a GCR password must be a service-account JSON key object",
        )
    })?;
    match object.get("type").and_then(|t| t.as_str()) {
        Some("service_account") => {}
        Some("external_account") => {
            return Err(Error::invalid(
                "password",
                "external_account (workload identity federation) keys are not supported: use a service-account key",
            ))
        }
        _ => {
            return Err(Error::invalid(
                "password",
                "the JSON key's \"type\" must be \"service_account\"",
            ))
        }
    }
    for field in ["client_email", "private_key", "private_key_id"] {
        let present = object
            .get(field)
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty());
        if !present {
            return Err(Error::invalid(
                "password",
                format!("the JSON key has no \"{field}\""),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(email: &str, username: &str, password: &str) -> NewCredential {
        NewCredential {
            email: email.into(),
            username: username.into(),
            password: SecretString::from(password.to_owned()),
            expire_time: None,
            ecr: None,
        }
    }

    fn gcr_key() -> String {
        serde_json::json!({
            "type": "service_account",
            "client_email": "puller@proj.iam.gserviceaccount.com",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
            "private_key_id": "abc123",
        })
        .to_string()
    }

    fn field_of(err: Error) -> &'static str {
        match err {
            Error::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_complete_credential_is_accepted() {
        let c = cred("a@b.c", "alice", "s3cret").validate(RegistryKind::Custom, SystemTime::now());
        assert!(c.is_ok());
    }

    #[test]
    fn each_empty_field_is_named() {
        let now = SystemTime::now();
        let e = cred("", "u", "p")
            .validate(RegistryKind::Custom, now)
            .unwrap_err();
        assert_eq!(field_of(e), "email");
        let e = cred("a@b.c", " ", "p")
            .validate(RegistryKind::Custom, now)
            .unwrap_err();
        assert_eq!(field_of(e), "username");
        let e = cred("a@b.c", "u", "")
            .validate(RegistryKind::Custom, now)
            .unwrap_err();
        assert_eq!(field_of(e), "password");
    }

    #[test]
    fn a_one_mebibyte_password_is_refused_without_echo() {
        let big = "x".repeat(1 << 20);
        let e = cred("a@b.c", "u", &big)
            .validate(RegistryKind::Custom, SystemTime::now())
            .unwrap_err();
        assert!(!e.to_string().contains("xxxx"));
        assert_eq!(field_of(e), "password");
    }

    #[test]
    fn an_email_without_at_is_refused() {
        let e = cred("alice", "u", "p")
            .validate(RegistryKind::Custom, SystemTime::now())
            .unwrap_err();
        assert_eq!(field_of(e), "email");
    }

    #[test]
    fn an_expiry_in_the_past_is_refused() {
        let mut c = cred("a@b.c", "u", "p");
        c.expire_time = Some(SystemTime::UNIX_EPOCH);
        let e = c
            .validate(RegistryKind::Custom, SystemTime::now())
            .unwrap_err();
        assert_eq!(field_of(e), "expire_time");
    }

    #[test]
    fn a_gcr_service_account_key_is_accepted() {
        let c = cred("a@b.c", "_json_key", &gcr_key())
            .validate(RegistryKind::Gcr, SystemTime::now())
            .unwrap();
        assert_eq!(c.username, "_json_key");
    }

    #[test]
    fn a_base64_gcr_key_is_stored_decoded() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(gcr_key());
        let c = cred("a@b.c", "_json_key_base64", &b64)
            .validate(RegistryKind::Gcr, SystemTime::now())
            .unwrap();
        assert_eq!(c.username, "_json_key");
        assert_eq!(c.password.expose_secret(), gcr_key());
    }

    #[test]
    fn gcr_keys_that_are_not_service_accounts_are_refused() {
        let now = SystemTime::now();
        let cases = [
            "not json at all SECRETMARK".to_owned(),
            "[1,2]".to_owned(),
            serde_json::json!({"type": "authorized_user", "client_email": "x", "private_key": "k", "private_key_id": "i"}).to_string(),
            serde_json::json!({"type": "external_account"}).to_string(),
            serde_json::json!({"type": "service_account", "private_key": "k", "private_key_id": "i"}).to_string(),
            serde_json::json!({"type": "service_account", "client_email": "x", "private_key_id": "i"}).to_string(),
            serde_json::json!({"type": "service_account", "client_email": "x", "private_key": "k"}).to_string(),
        ];
        for key in cases {
            let e = cred("a@b.c", "_json_key", &key)
                .validate(RegistryKind::Gcr, now)
                .unwrap_err();
            assert!(!e.to_string().contains("SECRETMARK"), "{e}");
            assert_eq!(field_of(e), "password", "{key}");
        }
    }

    #[test]
    fn a_gcr_key_over_8_kib_is_refused() {
        let mut key: serde_json::Value = serde_json::from_str(&gcr_key()).unwrap();
        key["padding"] = serde_json::Value::String("p".repeat(MAX_GCR_KEY_LEN));
        let e = cred("a@b.c", "_json_key", &key.to_string())
            .validate(RegistryKind::Gcr, SystemTime::now())
            .unwrap_err();
        assert!(e.to_string().contains("8192"), "{e}");
    }

    fn ecr(id: &str, secret: &str) -> NewCredential {
        NewCredential {
            ecr: Some(NewEcrKeys {
                access_key_id: id.into(),
                secret_access_key: SecretString::from(secret.to_owned()),
            }),
            ..cred("", "", "")
        }
    }

    #[test]
    fn ecr_access_keys_make_an_aws_credential_without_a_password() {
        let c = ecr(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .validate(RegistryKind::Ecr, SystemTime::now())
        .unwrap();
        assert_eq!(c.username, "AWS");
    }

    #[test]
    fn bad_ecr_keys_are_refused_naming_the_field_without_echo() {
        let now = SystemTime::now();
        let field = |c: NewCredential, kind| field_of(c.validate(kind, now).unwrap_err());
        assert_eq!(
            field(ecr("AKIAIOSFODNN7EXAMPLE", "s"), RegistryKind::Custom),
            "ecr"
        );
        assert_eq!(
            field(ecr("akia-lower", "s"), RegistryKind::Ecr),
            "ecr.access_key_id"
        );
        assert_eq!(
            field(ecr("ASIAIOSFODNN7EXAMPLE", "s"), RegistryKind::Ecr),
            "ecr.access_key_id"
        );
        assert_eq!(
            field(ecr("AKIAIOSFODNN7EXAMPLE", ""), RegistryKind::Ecr),
            "ecr.secret_access_key"
        );
        let e = ecr("AKIAIOSFODNN7EXAMPLE", "SECRET MARK")
            .validate(RegistryKind::Ecr, now)
            .unwrap_err();
        assert!(!e.to_string().contains("MARK"));
        let both = NewCredential {
            password: SecretString::from("tok".to_owned()),
            ..ecr("AKIAIOSFODNN7EXAMPLE", "s")
        };
        assert_eq!(field(both, RegistryKind::Ecr), "password");
    }

    #[test]
    fn a_gcr_registry_needs_the_json_key_username() {
        let e = cred("a@b.c", "alice", &gcr_key())
            .validate(RegistryKind::Gcr, SystemTime::now())
            .unwrap_err();
        assert_eq!(field_of(e), "username");
    }
}
