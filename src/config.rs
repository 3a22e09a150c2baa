//! The only place that reads flags and environment variables: the server's
//! settings, the client commands of the CLI, and the environment of the
//! docker credential helper.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// registrar: private registry credentials for orchestrator environments.
#[derive(Debug, Parser)]
#[command(name = "registrar", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(ServeConfig),
    /// Create, list, show and delete environments.
    #[command(name = "env")]
    Env(EnvArgs),
    /// Manage the registries (credentials) of an environment.
    Registry(RegistryArgs),
    /// Show or change the default registry and the whitelist (admin only).
    Settings(SettingsArgs),
    /// Ask whether an image may be pulled, and with which credential.
    Resolve(ResolveArgs),
    /// Stream an environment's registry and settings changes.
    Watch(WatchArgs),
    /// Issue, list and revoke tokens (admin only).
    Token(TokenArgs),
    /// Write the trust files a host needs (daemon.json, certs.d, hosts.toml, ...).
    HostConfig(HostConfigArgs),
    /// Print the environment's Kubernetes image pull secret (agent tokens).
    PullSecret(PullSecretArgs),
    /// Run as a kubelet image credential provider (stdin to stdout).
    KubeletCredentialProvider(ConnectionArgs),
    /// Mint a new admin token in a stopped server's data directory and print
    /// it once: the way back in when every admin token is revoked or lost.
    AdminToken(AdminTokenArgs),
    /// Rotate the key-encryption key: add, rewrap, status, retire.
    Key(KeyArgs),
}

/// `registrar key ...`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// The key subcommands, in the order of a rotation.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Put a new key first in the key file (the old ones stay after it); the
    /// server uses it from its next start. Edits the file only.
    Add {
        /// The server's key file.
        #[arg(long, env = "REGISTRAR_KEY_FILE", value_name = "PATH")]
        key_file: PathBuf,
    },
    /// Re-wrap the live data keys under the server's current key (admin).
    Rewrap {
        /// At most this many data keys; 0 re-wraps them all.
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Show the keys the server holds and how many data keys each wraps (admin).
    Status,
    /// Remove every key but the current one from the key file, once the
    /// server says no data key needs them (admin).
    Retire {
        /// The server's key file.
        #[arg(long, env = "REGISTRAR_KEY_FILE", value_name = "PATH")]
        key_file: PathBuf,
    },
}

/// Settings of `registrar admin-token`: where the stopped server keeps its
/// data and key, as `serve` takes them (`REGISTRAR_KEY` works too).
#[derive(Debug, Clone, Args)]
pub struct AdminTokenArgs {
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
    /// File of the key-encryption key; created (0600) if missing. Defaults to
    /// `<data-dir>.key`, beside the data directory, never inside it.
    #[arg(long, env = "REGISTRAR_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The key-encryption key itself (base64 of 32 bytes), instead of a
    /// file: from `REGISTRAR_KEY` only, never a flag, so it is not in the
    /// process's command line (see `read_secrets_from_env`).
    #[arg(skip)]
    pub key_value: Option<String>,
    /// An admin token to accept; when set, no admin.token file is written.
    /// From `REGISTRAR_ADMIN_TOKEN` only, like `key_value`.
    #[arg(skip)]
    pub admin_token: Option<String>,
    /// Milliseconds a watch stream's full buffer may stay unread before the
    /// stream ends with a status telling the client to resume.
    #[arg(
        long,
        env = "REGISTRAR_WATCH_STALL_MS",
        default_value_t = 30_000,
        hide = true
    )]
    pub watch_stall_ms: u64,
    /// Messages buffered per watch stream.
    #[arg(
        long,
        env = "REGISTRAR_WATCH_BUFFER",
        default_value_t = 256,
        hide = true
    )]
    pub watch_buffer: usize,
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
        self.key_value = read(KEY_ENV);
        self.admin_token = read(ADMIN_TOKEN_ENV);
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

/// Default URL of the server for client commands, matching `serve --listen`.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// Where a client command finds the server and its token.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// URL of the server (`http://host:port`, or `https://` for TLS).
    #[arg(long, env = "REGISTRAR_SERVER", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// Bearer token. Without one, `--token-file` is read, then the server's
    /// own `admin.token` when this machine has it.
    #[arg(long, env = "REGISTRAR_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "REGISTRAR_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// The server's data directory, to find its `admin.token` when no token is given.
    #[arg(long, env = "REGISTRAR_DATA_DIR", global = true, hide = true)]
    pub data_dir: Option<PathBuf>,
    /// PEM CA certificates to verify an `https://` server with, instead of
    /// the system's roots.
    #[arg(long, env = "REGISTRAR_SERVER_CA", value_name = "PATH", global = true)]
    pub server_ca: Option<PathBuf>,
    /// PEM client certificate to present over TLS (with --client-key). With
    /// no token, a certificate naming an agent authenticates as that agent.
    #[arg(
        long,
        env = "REGISTRAR_CLIENT_CERT",
        value_name = "PATH",
        global = true
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "REGISTRAR_CLIENT_KEY", value_name = "PATH", global = true)]
    pub client_key: Option<PathBuf>,
}

/// Connection and output options of the client commands.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Where the server is and who is asking.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Print JSON (the API's messages, proto3 JSON names) instead of tables.
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,
}

/// `registrar env ...`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: EnvCommand,
}

/// An environment's orchestration type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrchestrationArg {
    /// Cattle agents get Docker `AuthConfig` and `X-Registry-Auth`.
    Cattle,
    /// Kubelets get `.dockerconfigjson` and credential provider responses.
    Kubernetes,
}

/// The environment subcommands.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment.
    Create {
        /// Display name.
        name: String,
        /// Orchestration type, fixed for the environment's life.
        #[arg(long, value_enum)]
        orchestration: OrchestrationArg,
    },
    /// List environments.
    #[command(alias = "ls")]
    List,
    /// Show one environment.
    Show {
        /// Environment id.
        id: String,
    },
    /// Delete an environment and every registry in it.
    #[command(alias = "delete")]
    Rm {
        /// Environment id.
        id: String,
    },
}

/// `registrar registry ...`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: RegistryCommand,
}

/// A registry's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistryKindArg {
    /// Docker Hub (`index.docker.io`).
    DockerHub,
    /// Quay (`quay.io`).
    Quay,
    /// Any registry host with an optional port.
    Custom,
    /// Amazon ECR.
    Ecr,
    /// Google Container Registry and Artifact Registry.
    Gcr,
}

/// Where a password comes from: never the command line.
#[derive(Debug, Clone, Args)]
pub struct PasswordArgs {
    /// Read the password from standard input (one line, or everything for a JSON key).
    #[arg(long, conflicts_with = "password_file")]
    pub password_stdin: bool,
    /// Read the password from a file (a GCR service-account JSON key, say).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
}

/// The registry subcommands.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Add a registry, or a new credential for an address that has one.
    /// The password is prompted for unless --password-stdin or --password-file.
    Add {
        /// Environment id (members may leave it out: their token names it).
        #[arg(
            long = "env",
            value_name = "ENV_ID",
            default_value = "",
            hide_default_value = true
        )]
        env: String,
        /// Kind of registry.
        #[arg(long, value_enum, default_value = "custom")]
        kind: RegistryKindArg,
        /// Host with an optional port, no scheme (fixed for docker-hub and quay).
        #[arg(long, default_value = "", hide_default_value = true)]
        address: String,
        /// Email of the account (optional with --access-key-id).
        #[arg(long, default_value = "", hide_default_value = true)]
        email: String,
        /// User name of the account (AWS with --access-key-id).
        #[arg(long, default_value = "", hide_default_value = true)]
        username: String,
        /// ECR: the IAM access key id; the secret access key is then read
        /// where the password would be, and registrar fetches the tokens.
        #[arg(long, value_name = "AKIA...")]
        access_key_id: Option<String>,
        /// Where the password (or ECR secret access key) comes from.
        #[command(flatten)]
        password: PasswordArgs,
        /// Plain HTTP or TLS without verification.
        #[arg(long)]
        insecure: bool,
        /// PEM file of the CA certificates the registry's TLS chains to.
        #[arg(long, value_name = "PATH")]
        ca_file: Option<PathBuf>,
        /// Idempotency key: a retry with the same id returns the first result.
        #[arg(long, default_value = "", hide_default_value = true)]
        request_id: String,
    },
    /// List an environment's registries.
    #[command(alias = "ls")]
    List {
        /// Environment id (members and agents may leave it out).
        #[arg(
            long = "env",
            value_name = "ENV_ID",
            default_value = "",
            hide_default_value = true
        )]
        env: String,
    },
    /// Show one registry.
    Show {
        /// Registry id.
        id: String,
    },
    /// Change email, username, password or trust; the password is always required.
    Edit {
        /// Registry id.
        id: String,
        /// New email (default: keep).
        #[arg(long)]
        email: Option<String>,
        /// New user name (default: keep).
        #[arg(long)]
        username: Option<String>,
        /// ECR: new IAM access key id; the secret access key is then read
        /// where the password would be. An ECR registry's keys are only
        /// ever replaced this way, never by a password.
        #[arg(long, value_name = "AKIA...")]
        access_key_id: Option<String>,
        /// Where the password (or ECR secret access key) comes from.
        #[command(flatten)]
        password: PasswordArgs,
        /// Plain HTTP or unverified TLS: true or false (default: keep).
        #[arg(long, value_name = "BOOL")]
        insecure: Option<bool>,
        /// Replace the CA bundle with this PEM file.
        #[arg(long, value_name = "PATH", conflicts_with = "no_ca")]
        ca_file: Option<PathBuf>,
        /// Remove the CA bundle.
        #[arg(long)]
        no_ca: bool,
    },
    /// Let pulls use the registry's credential again.
    Activate {
        /// Registry id.
        id: String,
    },
    /// Block pulls from the registry's address.
    Deactivate {
        /// Registry id.
        id: String,
    },
    /// Delete the registry and destroy its credentials.
    #[command(alias = "delete")]
    Rm {
        /// Registry id.
        id: String,
    },
}

/// `registrar settings ...`.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: SettingsCommand,
}

/// The settings subcommands.
#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show the settings.
    Get,
    /// Change the settings named; the others stay as they are.
    Set {
        /// Registry for images without one; "" means Docker Hub.
        #[arg(long, value_name = "REGISTRY")]
        default_registry: Option<String>,
        /// Allowed registries, comma-separated as on Rancher's page; "" allows all.
        #[arg(long, value_name = "LIST")]
        whitelist: Option<String>,
    },
}

/// `registrar resolve IMAGE`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Image reference as `docker pull` takes it.
    pub image: String,
    /// Environment id (agents and members may leave it out).
    #[arg(
        long = "env",
        value_name = "ENV_ID",
        default_value = "",
        hide_default_value = true
    )]
    pub env: String,
}

/// `registrar watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Environment id (agents and members may leave it out).
    #[arg(
        long = "env",
        value_name = "ENV_ID",
        default_value = "",
        hide_default_value = true
    )]
    pub env: String,
    /// First print the current registries and settings.
    #[arg(long)]
    pub initial: bool,
    /// Resume after the message that carried this token.
    #[arg(
        long,
        value_name = "TOKEN",
        default_value = "",
        hide_default_value = true
    )]
    pub resume: String,
}

/// `registrar token ...`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Everything, in every environment.
    Admin,
    /// Manage the registries of one environment.
    Member,
    /// Resolve pulls, watch and fetch host configuration for one environment.
    Agent,
}

/// The token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; its secret is printed once.
    Create {
        /// What the bearer may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Environment id (members and agents).
        #[arg(
            long = "env",
            value_name = "ENV_ID",
            default_value = "",
            hide_default_value = true
        )]
        env: String,
        /// What the token is for.
        #[arg(long, default_value = "", hide_default_value = true)]
        description: String,
    },
    /// List tokens (never their secrets).
    #[command(alias = "ls")]
    List,
    /// Revoke a token at once.
    Revoke {
        /// Token id (the `rgr.<id>` part, or the id column of `token list`).
        token_id: String,
    },
}

/// A host's container runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostFormatArg {
    /// Docker: `daemon.json` and `certs.d/<host>/ca.crt`.
    Docker,
    /// containerd: `certs.d/<host>/hosts.toml`.
    Containerd,
    /// containers (podman, skopeo, CRI-O): `registries.conf` and `certs.d`.
    Containers,
    /// k3s: `registries.yaml`.
    K3s,
}

/// `registrar host-config`.
#[derive(Debug, Args)]
pub struct HostConfigArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Environment id (agents and members may leave it out).
    #[arg(
        long = "env",
        value_name = "ENV_ID",
        default_value = "",
        hide_default_value = true
    )]
    pub env: String,
    /// The runtime whose files to render.
    #[arg(long, value_enum)]
    pub format: HostFormatArg,
    /// Write the files under this directory (created if missing); without it
    /// they are printed.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// k3s only, agent tokens only: put the credentials into registries.yaml.
    #[arg(long)]
    pub include_auth: bool,
}

/// `registrar pull-secret`.
#[derive(Debug, Args)]
pub struct PullSecretArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Environment id (agent tokens name their own).
    #[arg(
        long = "env",
        value_name = "ENV_ID",
        default_value = "",
        hide_default_value = true
    )]
    pub env: String,
    /// metadata.name of the Secret (default `registrar-pull-secret`).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub name: String,
    /// metadata.namespace of the Secret.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub namespace: String,
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
#[path = "config_tests.rs"]
mod tests;
