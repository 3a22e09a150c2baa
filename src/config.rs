//! The server's flags and environment variables (`registrar serve`, and
//! `registrar admin-token`, which opens the same data directory), each
//! default declared once, on its flag. The client commands' grammar is in
//! `cli/args.rs`, the credential helper's in `cli/credential_helper.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// Settings of `registrar admin-token`: where the stopped server keeps its
/// data and key, or the replicas' database, as `serve` takes them
/// (`REGISTRAR_KEY` works too).
#[derive(Debug, Clone, Args)]
pub struct AdminTokenArgs {
    /// The replicas' PostgreSQL URL, instead of a data directory.
    #[arg(long, env = "REGISTRAR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// PEM file of the CA that signs the database server's certificate.
    #[arg(long, env = "REGISTRAR_DATABASE_CA")]
    pub database_ca: Option<PathBuf>,
    /// The server's data directory.
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = "./registrar-data")]
    pub data_dir: PathBuf,
    /// The server's key file (default: `<data-dir>.key`).
    #[arg(long, env = "REGISTRAR_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

impl AdminTokenArgs {
    /// Returns the server configuration these arguments name.
    pub fn serve_config(&self) -> ServeConfig {
        let mut config = ServeConfig::for_dir(self.data_dir.clone());
        config.key_file = self.key_file.clone();
        config.database_url = self.database_url.clone();
        config.database_ca = self.database_ca.clone();
        config.read_secrets_from_env();
        config.admin_token = None;
        config
    }
}

/// Settings of `registrar serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "REGISTRAR_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Directory of the event log and the wrapped data keys.
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = "./registrar-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (`postgres://USER@HOST:PORT/DB`) of the log that
    /// several replicas share; without it the log is in --data-dir (sled).
    /// The key must then be given (--key-file or REGISTRAR_KEY).
    #[arg(long, env = "REGISTRAR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// PEM file of the CA that signs the database server's certificate;
    /// with it, `sslmode=require` (or `prefer`) also checks the chain, and
    /// `verify-ca`/`verify-full` check against it instead of the system's
    /// roots.
    #[arg(long, env = "REGISTRAR_DATABASE_CA")]
    pub database_ca: Option<PathBuf>,
    /// Connections to the database each replica keeps at most.
    #[arg(long, env = "REGISTRAR_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,
    /// MiB of pages the embedded log (sled) keeps cached in memory; the
    /// view the server answers from is in memory apart from it.
    #[arg(
        long,
        env = "REGISTRAR_SLED_CACHE_MIB",
        default_value_t = crate::store::sled::DEFAULT_CACHE_BYTES / (1024 * 1024),
        value_parser = clap::value_parser!(u64).range(1..=1024 * 1024)
    )]
    pub sled_cache_mib: u64,
    /// File of the key-encryption key; created (0600) if missing. Defaults to
    /// `<data-dir>.key`, beside the data directory, never inside it.
    #[arg(long, env = "REGISTRAR_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The key-encryption key itself (base64 of 32 bytes), instead of a
    /// file: from `REGISTRAR_KEY` only, never a flag, so it is not in the
    /// process's command line (see `read_secrets_from_env`).
    #[arg(skip)]
    pub key_value: Option<SecretText>,
    /// An admin token to accept; when set, no admin.token file is written.
    /// From `REGISTRAR_ADMIN_TOKEN` only, like `key_value`.
    #[arg(skip)]
    pub admin_token: Option<SecretText>,
    /// Milliseconds a watch stream with changes to send may stay unread
    /// before it ends with a status telling the client to resume.
    #[arg(
        long,
        env = "REGISTRAR_WATCH_STALL_MS",
        default_value_t = 30_000,
        hide = true
    )]
    pub watch_stall_ms: u64,
    /// Most milliseconds between two wake-ups of the watch streams under a
    /// stream of writes (40 µs per open stream up to this; 0: every applied
    /// commit wakes them).
    #[arg(
        long,
        env = "REGISTRAR_WATCH_PACE_MS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u64).range(0..=1000)
    )]
    pub watch_pace_ms: u64,
    /// Milliseconds between bookmarks on a quiet watch stream.
    #[arg(
        long,
        env = "REGISTRAR_WATCH_BOOKMARK_MS",
        default_value_t = 15_000,
        hide = true
    )]
    pub watch_bookmark_ms: u64,
    /// Milliseconds between checks of ECR token schedules.
    #[arg(
        long,
        env = "REGISTRAR_ECR_POLL_MS",
        default_value_t = 5_000,
        hide = true
    )]
    pub ecr_poll_ms: u64,
    /// Largest request RegistryService decodes, in bytes; the other services
    /// take at most 64 KiB. Larger requests fail with RESOURCE_EXHAUSTED.
    #[arg(long, env = "REGISTRAR_MAX_REQUEST_BYTES", default_value_t = 256 * 1024)]
    pub max_request_bytes: usize,
    /// HTTP/2 streams (calls) one connection may have open at once.
    #[arg(long, env = "REGISTRAR_MAX_CONCURRENT_STREAMS", default_value_t = 128)]
    pub max_concurrent_streams: u32,
    /// Calls one connection may have in progress; more are shed at once
    /// (RESOURCE_EXHAUSTED) instead of queueing.
    #[arg(long, env = "REGISTRAR_MAX_CALLS_PER_CONNECTION", default_value_t = 64)]
    pub max_calls_per_connection: usize,
    /// Milliseconds a call may take to answer (a Watch only to start).
    #[arg(long, env = "REGISTRAR_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Seconds between HTTP/2 pings; a peer that does not answer one within
    /// `--keepalive-timeout-secs` is disconnected.
    #[arg(long, env = "REGISTRAR_KEEPALIVE_SECS", default_value_t = 30)]
    pub keepalive_secs: u64,
    /// Seconds to wait for the answer to an HTTP/2 ping.
    #[arg(long, env = "REGISTRAR_KEEPALIVE_TIMEOUT_SECS", default_value_t = 10)]
    pub keepalive_timeout_secs: u64,
    /// Watch streams one token may hold open at once.
    #[arg(long, env = "REGISTRAR_MAX_WATCHES_PER_TOKEN", default_value_t = 16)]
    pub max_watches_per_token: usize,
    /// Registries one environment may have; more are RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "REGISTRAR_MAX_REGISTRIES_PER_ENVIRONMENT",
        default_value_t = 1_000
    )]
    pub max_registries_per_environment: usize,
    /// Bytes of CA bundles the registries of one environment may carry in all.
    #[arg(
        long,
        env = "REGISTRAR_MAX_CA_BYTES_PER_ENVIRONMENT",
        default_value_t = 1024 * 1024
    )]
    pub max_ca_bytes_per_environment: usize,
    /// PEM certificate chain to serve TLS with (with --tls-key).
    #[arg(
        long,
        env = "REGISTRAR_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "REGISTRAR_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates that sign agents' client certificates. A verified
    /// certificate with the URI SAN
    /// `spiffe://<trust-domain>/registrar/agent/<environment-id>`
    /// authenticates as an agent of that environment when no token is sent.
    #[arg(
        long,
        env = "REGISTRAR_TLS_CLIENT_CA",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse TLS connections without a client certificate signed by
    /// --tls-client-ca (tokens, when sent, still decide who the caller is).
    #[arg(
        long,
        env = "REGISTRAR_TLS_REQUIRE_CLIENT_CERT",
        requires = "tls_client_ca"
    )]
    pub tls_require_client_cert: bool,
    /// Serve plaintext gRPC on a non-loopback address; without it such a
    /// --listen needs --tls-cert and --tls-key.
    #[arg(long, env = "REGISTRAR_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,
    /// Address of a plain-HTTP listener serving Prometheus metrics at
    /// `GET /metrics`; no metrics listener without it.
    #[arg(long, env = "REGISTRAR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Address of the HTTPS listener of the Kubernetes admission webhooks
    /// (`/admission/v1/ENVIRONMENT_ID/validate` and `/mutate`); needs
    /// --admission-tls-cert and --admission-tls-key.
    #[arg(
        long,
        env = "REGISTRAR_ADMISSION_LISTEN",
        requires_all = ["admission_tls_cert", "admission_tls_key"]
    )]
    pub admission_listen: Option<SocketAddr>,
    /// PEM certificate chain of the admission listener (its CA goes into
    /// the webhook configurations' caBundle).
    #[arg(
        long,
        env = "REGISTRAR_ADMISSION_TLS_CERT",
        requires = "admission_listen"
    )]
    pub admission_tls_cert: Option<PathBuf>,
    /// PEM private key of the admission listener.
    #[arg(
        long,
        env = "REGISTRAR_ADMISSION_TLS_KEY",
        requires = "admission_listen"
    )]
    pub admission_tls_key: Option<PathBuf>,
    /// File the audit trail is appended to (JSON lines), `-` for standard
    /// output; no audit trail without it.
    #[arg(long, env = "REGISTRAR_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// How log lines are written to standard error: `text` for people,
    /// `json` (one object per line, with the span fields) for collectors.
    #[arg(long, env = "REGISTRAR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// How often the credential of every active registry is checked against
    /// its registry (a login, recorded as its last_verification), as a
    /// number with a unit: `6h`, `30m`, `90s`, at most `365d`; `0` turns
    /// the check off.
    #[arg(
        long,
        env = "REGISTRAR_VERIFY_INTERVAL",
        default_value = "6h",
        value_parser = parse_interval
    )]
    pub verify_interval: Interval,
    /// Seconds one login to a registry may take in all (connecting, the
    /// token service, every answer); a registry slower than this counts as
    /// not answering.
    #[arg(
        long,
        env = "REGISTRAR_VERIFY_TIMEOUT_SECS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub verify_timeout_secs: u64,
}

/// A period given with a unit (`6h`, `30m`, `90s`, `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub std::time::Duration);

/// Parses `<number><unit>` with unit `s`, `m`, `h` or `d`, or `0`.
pub fn parse_interval(text: &str) -> Result<Interval, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Interval(std::time::Duration::ZERO));
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
        format!("{text:?} has no unit: write it as 90s, 30m, 6h or 1d (0 turns it off)")
    })?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    match number.checked_mul(seconds) {
        Some(s) if s <= MAX_INTERVAL_SECS => Ok(Interval(std::time::Duration::from_secs(s))),
        _ => Err(format!("{text:?} is longer than a year (365d)")),
    }
}

/// The longest interval `parse_interval` takes: a year.
const MAX_INTERVAL_SECS: u64 = 365 * 86_400;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The variable that holds the key-encryption key.
pub const KEY_ENV: &str = "REGISTRAR_KEY";
/// The variable that holds an admin token to accept.
pub const ADMIN_TOKEN_ENV: &str = "REGISTRAR_ADMIN_TOKEN";

impl ServeConfig {
    /// Reads the secrets a server may take from its environment
    /// (`REGISTRAR_KEY`, `REGISTRAR_ADMIN_TOKEN`): secrets come from the
    /// environment or files, never the command line, where `ps` shows them.
    /// An empty variable counts as unset.
    pub fn read_secrets_from_env(&mut self) {
        let read = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        self.key_value = read(KEY_ENV).map(SecretText);
        self.admin_token = read(ADMIN_TOKEN_ENV).map(SecretText);
    }

    /// Returns the key file's path: the flag, or `<data-dir>.key`.
    pub fn key_file_path(&self) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| {
            let mut name = self
                .data_dir
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "registrar-data".into());
            name.push(".key");
            self.data_dir.with_file_name(name)
        })
    }

    /// Returns the configuration `registrar serve --data-dir DIR` has with
    /// every other setting at its default, as declared on the flags above
    /// (the environment is not read).
    ///
    /// # Panics
    ///
    /// Panics only if the flags above declare a default their own parser
    /// refuses, which the tests would show at once.
    pub fn for_dir(data_dir: PathBuf) -> Self {
        use clap::{Args as _, FromArgMatches as _};
        let command =
            Self::augment_args(clap::Command::new("serve")).mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from([
                std::ffi::OsString::from("serve"),
                "--data-dir".into(),
                data_dir.into(),
            ])
            .expect("the declared defaults parse");
        Self::from_arg_matches(&matches).expect("the declared defaults parse")
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

/// A secret setting (the key, an admin token): its `Debug` never shows it,
/// so a configuration printed in a log line or a panic carries no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::ops::Deref for SecretText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretText {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// The database URL: its `Debug` shows it without the password
/// (`postgres://user:***@host/db`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact_password(&self.0))
    }
}

impl std::ops::Deref for DatabaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for DatabaseUrl {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Replaces the password of a URL's user part, or a key=value string's
/// `password=`, with `***`.
fn redact_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((user, host)) = rest.split_once('@') {
            if let Some((name, _)) = user.split_once(':') {
                return format!("{scheme}://{name}:***@{host}");
            }
        }
        // A password may also be a query parameter.
        return url
            .split('&')
            .map(|part| match part.split_once("password=") {
                Some((before, _)) => format!("{before}password=***"),
                None => part.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
    }
    url.split_whitespace()
        .map(|pair| {
            if pair.starts_with("password=") {
                "password=***".to_owned()
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
