//! The audit trail (`--audit-log PATH`, `-` for standard output): one JSON
//! object per line for every mutation, accepted or refused, and for every
//! answer that hands out a secret. Each line is written to the file (one
//! `write` of the whole line, no buffer in between) before the answer
//! leaves; when it cannot be, the caller fails closed: no secret is handed
//! out and no change is made. Failures are counted in
//! `registrar_audit_failures_total`.
//!
//! No entry holds a secret in any form. A user name appears only as
//! `username_hmac`: HMAC-SHA256 keyed from the key-encryption key (see
//! `Kek::audit_hmac`), which `registrar audit-hmac` computes for a known
//! value.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::crypto::Keyring;

/// Where entries go.
#[derive(Debug)]
enum Sink {
    /// Standard output, for container log collectors.
    Stdout,
    /// A file opened for appending (0600 when created).
    File(File),
}

/// The audit trail of one server; disabled unless `--audit-log` is given.
#[derive(Debug)]
pub struct Audit {
    sink: Option<(String, Mutex<Sink>)>,
    keys: Option<Arc<Keyring>>,
    failures: Counter,
}

/// The audit log could not be written (its path is in the server's log,
/// never in an answer).
#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot be written")]
pub struct Unavailable(pub String);

/// Why the audit log could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("--audit-log {path}: {source}", path = path.display())]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

impl Audit {
    /// An audit trail that writes nothing.
    pub fn disabled() -> Self {
        Self {
            sink: None,
            keys: None,
            failures: Counter::default(),
        }
    }

    /// A trail that writes nothing but keys user names with `keys`, as one
    /// opened with them would (for `registrar audit-hmac`).
    pub fn with_keys(keys: Arc<Keyring>) -> Self {
        Self {
            sink: None,
            keys: Some(keys),
            failures: Counter::default(),
        }
    }

    /// Opens `path` (`-` for standard output) for appending; user names are
    /// keyed with `keys`' current key, failures counted in `failures`.
    pub fn open(path: &Path, keys: Arc<Keyring>, failures: Counter) -> Result<Self, OpenError> {
        let sink = if path == Path::new("-") {
            Sink::Stdout
        } else {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| OpenError {
                    path: path.to_path_buf(),
                    source,
                })?;
            Sink::File(file)
        };
        Ok(Self {
            sink: Some((path.display().to_string(), Mutex::new(sink))),
            keys: Some(keys),
            failures,
        })
    }

    /// Whether entries are written at all.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Names a user name without showing it: the hex HMAC, or `None` when
    /// the trail is off or the name empty.
    pub fn username_hmac(&self, username: &str) -> Option<String> {
        let keys = self.keys.as_ref()?;
        if username.is_empty() {
            return None;
        }
        Some(hex(&keys.current().audit_hmac(username.as_bytes())))
    }

    /// Writes one entry as one line; `Ok` when the trail is off.
    pub fn write(&self, entry: &Entry) -> Result<(), Unavailable> {
        let Some((name, sink)) = &self.sink else {
            return Ok(());
        };
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(e) => return Err(self.failed(name, &e)),
        };
        line.push(b'\n');
        let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
        let written = match &mut *sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush())
            }
            Sink::File(file) => file.write_all(&line),
        };
        written.map_err(|e| self.failed(name, &e))
    }

    fn failed(&self, name: &str, e: &dyn std::fmt::Display) -> Unavailable {
        self.failures.inc();
        tracing::error!(audit_log = %name, error = %e, "writing an audit entry failed");
        Unavailable(name.to_owned())
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who called.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Caller {
    /// The token's public id (`system` for the server's own work; a client
    /// certificate's SHA-256 fingerprint for an agent certificate).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token_id: String,
    /// admin, member or agent.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub role: &'static str,
    /// The token's environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// The client certificate's SPIFFE ID, when it authenticated the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
}

/// A credential handed out.
#[derive(Debug, Clone, Serialize)]
pub struct HandedOut {
    /// The registry's address.
    pub registry: String,
    /// The registry's id.
    pub registry_id: String,
    /// The credential's id.
    pub credential_id: String,
    /// The credential's user name, keyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username_hmac: Option<String>,
}

/// One line of the trail. Empty fields are left out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Entry {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// `request` (a mutation about to be decided), `response` (its
    /// outcome), or `handout` (an answer that may carry secrets).
    pub phase: &'static str,
    /// The full method name (`registrar.v1.RegistryService/CreateRegistry`),
    /// or what the server did on its own (`ecr.refresh`).
    pub rpc: &'static str,
    /// The caller's idempotency key.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// Who called.
    pub caller: Caller,
    /// The peer's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The environment asked about.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub environment_id: String,
    /// The image asked for (ResolvePull).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// The registry asked for: an address, or a ResolvePull's registry.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub registry: String,
    /// The registry the pull resolved to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resolved_registry: String,
    /// The registry acted on or handed out.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub registry_id: String,
    /// The credential acted on or handed out.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credential_id: String,
    /// The user name given or handed out, keyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username_hmac: Option<String>,
    /// The token issued or revoked (its public id, never its secret).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token_id: String,
    /// Credentials a host configuration or pull secret carried.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<HandedOut>,
    /// accepted or refused (mutations); allowed, anonymous or denied (pulls).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub decision: &'static str,
    /// Why a pull was denied.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub deny_reason: &'static str,
    /// The gRPC status code of the answer (a response or hand-out).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub code: &'static str,
    /// The log position of an accepted mutation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

/// Cuts `s` to at most `max` bytes, at a character boundary, marking the cut.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

impl Entry {
    /// Cuts every field a caller chose to at most `max` bytes.
    pub fn bound(&mut self, max: usize) {
        for field in [
            &mut self.request_id,
            &mut self.environment_id,
            &mut self.image,
            &mut self.registry,
            &mut self.registry_id,
            &mut self.token_id,
        ] {
            cut(field, max);
        }
    }

    /// An entry of `phase` for `rpc`, stamped now.
    pub fn new(phase: &'static str, rpc: &'static str, now: SystemTime) -> Self {
        Self {
            time: crate::timestamp::system_to_timestamp(now).to_string(),
            phase,
            rpc,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Arc<Keyring> {
        Arc::new(Keyring::from(crate::crypto::Kek::generate()))
    }

    #[test]
    fn entries_are_lines_of_json_appended_to_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = Audit::open(&path, keys(), Counter::default()).unwrap();
        let mut e = Entry::new(
            "handout",
            "registrar.v1.PullService/ResolvePull",
            SystemTime::UNIX_EPOCH,
        );
        e.username_hmac = audit.username_hmac("alice");
        audit.write(&e).unwrap();
        audit.write(&e).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let parsed: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(parsed["time"], "1970-01-01T00:00:00Z");
        assert_eq!(parsed["rpc"], "registrar.v1.PullService/ResolvePull");
        assert!(parsed.get("image").is_none(), "empty fields are left out");
        assert!(!text.contains("alice"));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_user_name_is_keyed_and_the_same_name_gives_the_same_value() {
        let audit = Audit::open(Path::new("-"), keys(), Counter::default()).unwrap();
        let a = audit.username_hmac("alice").unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(Some(a.clone()), audit.username_hmac("alice"));
        assert_ne!(Some(a), audit.username_hmac("bob"));
        assert_eq!(audit.username_hmac(""), None);
        assert_eq!(Audit::disabled().username_hmac("alice"), None);
    }

    #[test]
    fn an_unwritable_log_is_an_error_and_counted() {
        let failures = Counter::default();
        let audit = Audit::open(Path::new("/dev/full"), keys(), failures.clone()).unwrap();
        let e = Entry::new("response", "x", SystemTime::UNIX_EPOCH);
        assert!(audit.write(&e).is_err());
        assert_eq!(failures.get(), 1);
        assert!(Audit::disabled().write(&e).is_ok());
    }
}
