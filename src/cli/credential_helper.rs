//! The docker credential helper protocol (`docker-credential-registrar`):
//! `get` answers from ResolvePull (registry form), `list` from
//! ListRegistries; the helper is read-only.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use super::args::{ConnectionArgs, DEFAULT_SERVER};
use super::connect::{Connection, Discovery};
use super::{code_name, Error};
use crate::adapters::{docker_config_key, DOCKER_HUB};
use crate::pb;

/// What docker, skopeo and the other clients compare to fall back to an
/// anonymous pull: it must be printed exactly so.
pub const NOT_FOUND: &str = "credentials not found in native keychain";

/// The message for `store` and `erase`.
pub const READ_ONLY: &str =
    "registrar's credential helper is read-only: manage credentials with `registrar registry`";

/// Standard input is a server URL; anything longer is not one.
const MAX_INPUT: u64 = 4096;

/// What the helper prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Standard output (the protocol's answer or error message).
    pub stdout: String,
    /// Standard error (for people reading a log; clients ignore it).
    pub stderr: String,
    /// 0 on success, 1 on any error.
    pub exit_code: u8,
}

impl Outcome {
    fn ok(stdout: String) -> Self {
        Self {
            stdout,
            stderr: String::new(),
            exit_code: 0,
        }
    }

    fn error(message: impl Into<String>) -> Self {
        Self {
            stdout: message.into(),
            stderr: String::new(),
            exit_code: 1,
        }
    }

    fn not_found(why: impl Into<String>) -> Self {
        Self {
            stdout: NOT_FOUND.to_owned(),
            stderr: why.into(),
            exit_code: 1,
        }
    }
}

/// Turns the server URL docker passes into the registry host registrar
/// knows: scheme, user info and path removed, lower-cased, and Docker Hub's
/// names (`https://index.docker.io/v1/`, `docker.io`, `registry-1.docker.io`)
/// mapped to `index.docker.io`.
///
/// Returns `None` when nothing of a host is left.
pub fn registry_host(server_url: &str) -> Option<String> {
    let s = server_url.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let s = s.split(['/', '?', '#']).next().unwrap_or_default();
    let s = s.rsplit_once('@').map_or(s, |(_, host)| host);
    let host = s.to_ascii_lowercase();
    match host.as_str() {
        "" => None,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => Some(DOCKER_HUB.to_owned()),
        _ => Some(host),
    }
}

/// Renders the `get` answer: `{"ServerURL":…,"Username":…,"Secret":…}`.
pub fn credentials_json(server_url: &str, username: &str, secret: &str) -> String {
    serde_json::json!({
        "ServerURL": server_url,
        "Username": username,
        "Secret": secret,
    })
    .to_string()
}

/// Decides the `get` answer from ResolvePull's response: a credential, or
/// "not found" (anonymous pull, unknown host, or denied; the reason then
/// goes to stderr).
pub fn get_answer(server_url: &str, r: &pb::ResolvePullResponse) -> Outcome {
    match &r.decision {
        Some(pb::resolve_pull_response::Decision::Allowed(a)) => match &a.credential {
            Some(c) => Outcome::ok(credentials_json(server_url, &c.username, &c.password)),
            None => Outcome::not_found(format!(
                "registrar has no credential for {}: pull anonymously",
                r.registry
            )),
        },
        Some(pb::resolve_pull_response::Decision::Denied(d)) => {
            let reason = pb::DenyReason::try_from(d.reason)
                .map(|r| r.as_str_name().to_owned())
                .unwrap_or_else(|_| d.reason.to_string());
            Outcome::not_found(format!(
                "registrar denies pulls from {}: {} ({reason})",
                r.registry, d.message
            ))
        }
        None => Outcome::error("registrar answered without a decision"),
    }
}

/// Renders the `list` answer: `{serverURL: username}` of active registries.
pub fn list_answer(registries: &[pb::Registry]) -> String {
    let map: BTreeMap<String, &str> = registries
        .iter()
        .filter(|r| r.state == pb::RegistryState::Active as i32)
        .map(|r| (docker_config_key(&r.address), r.username.as_str()))
        .collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned())
}

fn helper_error(e: &Error) -> String {
    match e {
        Error::Status { code, message, .. } => {
            format!("registrar: {}: {message}", code_name(*code))
        }
        other => format!("registrar: {other}"),
    }
}

/// Runs one helper action: `input` is its standard input.
pub async fn run(config: &HelperConfig, input: impl Read) -> Outcome {
    let action = match &config.action {
        Ok(action) => *action,
        Err(arg) if arg.is_empty() => {
            return Outcome::error(
                "usage: docker-credential-registrar <get|list|store|erase|version>",
            )
        }
        Err(arg) => {
            return Outcome::error(format!(
                "unknown credential helper action {arg:?}: use get, list, store, erase or version"
            ))
        }
    };
    match action {
        HelperAction::Version => Outcome::ok(format!(
            "docker-credential-registrar (registrar) {}\n",
            env!("CARGO_PKG_VERSION")
        )),
        HelperAction::Store | HelperAction::Erase => {
            // Drain the request so the client never sees a broken pipe.
            let _ = std::io::copy(&mut input.take(1 << 20), &mut std::io::sink());
            Outcome::error(READ_ONLY)
        }
        HelperAction::Get => {
            let mut text = String::new();
            if input.take(MAX_INPUT).read_to_string(&mut text).is_err() {
                return Outcome::error("registrar: standard input is not a server URL");
            }
            let server_url = text.trim().to_owned();
            let Some(host) = registry_host(&server_url) else {
                return Outcome::error("registrar: no server URL on standard input");
            };
            let conn = match Connection::open(&config.connection, Discovery::GivenOnly).await {
                Ok(c) => c,
                Err(e) => return Outcome::error(helper_error(&e)),
            };
            let answer = conn
                .pulls()
                .resolve_pull(pb::ResolvePullRequest {
                    min_revision: 0,
                    environment_id: String::new(),
                    target: Some(pb::resolve_pull_request::Target::Registry(host)),
                })
                .await;
            match answer {
                Ok(r) => get_answer(&server_url, r.get_ref()),
                // A host registrar cannot take is not one it has a credential for.
                Err(s) if s.code() == tonic::Code::InvalidArgument => {
                    Outcome::not_found(format!("registrar: {}", s.message()))
                }
                Err(s) => Outcome::error(helper_error(&conn.status(s))),
            }
        }
        HelperAction::List => {
            let conn = match Connection::open(&config.connection, Discovery::GivenOnly).await {
                Ok(c) => c,
                Err(e) => return Outcome::error(helper_error(&e)),
            };
            match super::commands::list_registries(&conn, "").await {
                Ok(registries) => Outcome::ok(list_answer(&registries)),
                Err(e) => Outcome::error(helper_error(&e)),
            }
        }
    }
}

/// Writes an outcome to the process's streams and returns its exit code.
pub fn emit(outcome: &Outcome) -> u8 {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.stdout.as_bytes());
    if !outcome.stdout.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
    if !outcome.stderr.is_empty() {
        eprintln!("{}", outcome.stderr);
    }
    outcome.exit_code
}

/// What the docker credential helper was asked to do (its first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperAction {
    /// Print the credential of the server URL read from stdin.
    Get,
    /// Print `{serverURL: username}` of the environment's active registries.
    List,
    /// Refused: the helper is read-only.
    Store,
    /// Refused: the helper is read-only.
    Erase,
    /// Print the version.
    Version,
}

impl HelperAction {
    /// Parses the helper's first argument as docker passes it.
    pub fn parse(arg: &str) -> Option<Self> {
        match arg {
            "get" => Some(Self::Get),
            "list" => Some(Self::List),
            "store" => Some(Self::Store),
            "erase" => Some(Self::Erase),
            "version" | "--version" | "-v" => Some(Self::Version),
            _ => None,
        }
    }
}

/// The docker credential helper's configuration: its action from argv, the
/// server and the token from the environment only (never from argv).
#[derive(Debug, Clone)]
pub struct HelperConfig {
    /// The action, or the unknown argument given.
    pub action: Result<HelperAction, String>,
    /// The server and the token.
    pub connection: ConnectionArgs,
}

impl HelperConfig {
    /// Reads the helper's action from argv and its connection from
    /// `REGISTRAR_SERVER`, `REGISTRAR_TOKEN`, `REGISTRAR_TOKEN_FILE` and the
    /// TLS files `REGISTRAR_SERVER_CA`, `REGISTRAR_CLIENT_CERT`, `REGISTRAR_CLIENT_KEY`.
    pub fn from_env() -> Self {
        let arg = std::env::args().nth(1).unwrap_or_default();
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            action: HelperAction::parse(&arg).ok_or(arg),
            connection: ConnectionArgs {
                server: var("REGISTRAR_SERVER").unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
                token: var("REGISTRAR_TOKEN"),
                token_file: var("REGISTRAR_TOKEN_FILE").map(PathBuf::from),
                data_dir: None,
                server_ca: var("REGISTRAR_SERVER_CA").map(PathBuf::from),
                client_cert: var("REGISTRAR_CLIENT_CERT").map(PathBuf::from),
                client_key: var("REGISTRAR_CLIENT_KEY").map(PathBuf::from),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_registry_hosts() {
        for (input, host) in [
            ("reg.example.com:5000", "reg.example.com:5000"),
            ("https://reg.example.com:5000", "reg.example.com:5000"),
            ("https://reg.example.com:5000/v2/", "reg.example.com:5000"),
            ("http://user@Reg.Example.com/x?y", "reg.example.com"),
            ("  127.0.0.1:41234\n", "127.0.0.1:41234"),
            ("[::1]:5000", "[::1]:5000"),
        ] {
            assert_eq!(registry_host(input).as_deref(), Some(host), "{input}");
        }
    }

    #[test]
    fn docker_hub_aliases_map_to_index_docker_io() {
        for input in [
            "https://index.docker.io/v1/",
            "docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io/v2/",
        ] {
            assert_eq!(registry_host(input).as_deref(), Some("index.docker.io"));
        }
    }

    #[test]
    fn an_empty_server_url_has_no_host() {
        assert_eq!(registry_host(""), None);
        assert_eq!(registry_host("https://"), None);
    }

    #[test]
    fn the_get_answer_uses_docker_field_names_and_escapes() {
        let v: serde_json::Value =
            serde_json::from_str(&credentials_json("reg:5000", "alice", "p\"w\\")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ServerURL": "reg:5000", "Username": "alice", "Secret": "p\"w\\"})
        );
    }

    fn answer(decision: pb::resolve_pull_response::Decision) -> pb::ResolvePullResponse {
        pb::ResolvePullResponse {
            revision: 1,
            resolved_image: String::new(),
            registry: "reg:5000".into(),
            decision: Some(decision),
            repository_scope: String::new(),
        }
    }

    #[test]
    fn an_allowed_credential_is_printed_with_the_url_as_asked() {
        let o = get_answer(
            "https://reg:5000",
            &answer(pb::resolve_pull_response::Decision::Allowed(
                pb::PullAllowed {
                    credential: Some(pb::PullCredential {
                        username: "alice".into(),
                        password: "s3cret".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
        );
        assert_eq!(o.exit_code, 0);
        assert_eq!(
            o.stdout,
            r#"{"Secret":"s3cret","ServerURL":"https://reg:5000","Username":"alice"}"#
        );
    }

    #[test]
    fn anonymous_and_denied_answers_are_not_found_exactly() {
        let anonymous = get_answer(
            "reg:5000",
            &answer(pb::resolve_pull_response::Decision::Allowed(
                pb::PullAllowed::default(),
            )),
        );
        let denied = get_answer(
            "reg:5000",
            &answer(pb::resolve_pull_response::Decision::Denied(
                pb::PullDenied {
                    reason: pb::DenyReason::RegistryInactive as i32,
                    message: "The registry is inactive".into(),
                },
            )),
        );
        for o in [&anonymous, &denied] {
            assert_eq!(o.stdout, NOT_FOUND);
            assert_eq!(o.exit_code, 1);
        }
        assert!(
            denied.stderr.contains("DENY_REASON_REGISTRY_INACTIVE"),
            "{}",
            denied.stderr
        );
    }

    #[test]
    fn the_list_answer_maps_active_registries_to_their_users() {
        let reg = |address: &str, user: &str, state: pb::RegistryState| pb::Registry {
            address: address.into(),
            username: user.into(),
            state: state as i32,
            ..Default::default()
        };
        let out = list_answer(&[
            reg("reg:5000", "alice", pb::RegistryState::Active),
            reg("index.docker.io", "hub", pb::RegistryState::Active),
            reg("off:1", "bob", pb::RegistryState::Inactive),
        ]);
        assert_eq!(
            out,
            r#"{"https://index.docker.io/v1/":"hub","reg:5000":"alice"}"#
        );
    }

    #[tokio::test]
    async fn store_and_erase_say_the_helper_is_read_only() {
        for action in [HelperAction::Store, HelperAction::Erase] {
            let config = HelperConfig {
                action: Ok(action),
                connection: crate::cli::args::ConnectionArgs {
                    server: "http://127.0.0.1:1".into(),
                    token: None,
                    token_file: None,
                    data_dir: None,
                    server_ca: None,
                    client_cert: None,
                    client_key: None,
                },
            };
            let o = run(
                &config,
                &br#"{"ServerURL":"x","Username":"u","Secret":"s"}"#[..],
            )
            .await;
            assert_eq!((o.stdout.as_str(), o.exit_code), (READ_ONLY, 1));
        }
    }

    #[tokio::test]
    async fn an_unknown_action_is_an_error_on_stdout() {
        let config = HelperConfig {
            action: Err("frobnicate".into()),
            connection: crate::cli::args::ConnectionArgs {
                server: "http://127.0.0.1:1".into(),
                token: None,
                token_file: None,
                data_dir: None,
                server_ca: None,
                client_cert: None,
                client_key: None,
            },
        };
        let o = run(&config, &b""[..]).await;
        assert_eq!(o.exit_code, 1);
        assert!(o.stdout.contains("frobnicate"));
    }
}
