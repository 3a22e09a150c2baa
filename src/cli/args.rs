//! The CLI's grammar: the top-level command (the server's `serve` and
//! `admin-token`, whose flags are in `config.rs`, and the client commands),
//! and every client command's arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{AdminTokenArgs, ServeConfig};

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
    /// Move a stopped server's store: `store copy` from a data directory
    /// into an empty PostgreSQL database.
    Store(StoreArgs),
    /// Show who changed an environment's registries and settings, and when,
    /// newest first (admins and the environment's members).
    History(HistoryArgs),
    /// Print the audit log's `username_hmac` of a user name, with the
    /// server's key, to find a known user's entries.
    AuditHmac(AuditHmacArgs),
}

/// `registrar history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The environment.
    #[command(flatten)]
    pub env: EnvArg,
    /// Only the events of this registry (by id).
    #[arg(long = "registry", value_name = "REGISTRY_ID", default_value = "")]
    pub registry: String,
    /// At most this many events (all when 0).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// `registrar audit-hmac USERNAME`: the key as `serve` takes it.
#[derive(Debug, Args)]
pub struct AuditHmacArgs {
    /// The user name to look for.
    pub username: String,
    /// The server's data directory (for its default key file).
    #[arg(long, env = "REGISTRAR_DATA_DIR", default_value = "./registrar-data")]
    pub data_dir: PathBuf,
    /// The server's key file (default: `<data-dir>.key`); `REGISTRAR_KEY`
    /// works too.
    #[arg(long, env = "REGISTRAR_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

/// `registrar store ...`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// The store subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped server's data directory (sled) into an empty
    /// PostgreSQL database: every position, request record and data key,
    /// verified by reading it all back. The key is not needed: data keys
    /// move still wrapped.
    Copy {
        /// The stopped server's data directory.
        #[arg(long, value_name = "DIR")]
        from_data_dir: PathBuf,
        /// The new, empty database.
        #[arg(
            long,
            value_name = "URL",
            env = "REGISTRAR_DATABASE_URL",
            hide_env_values = true
        )]
        to_database_url: String,
        /// PEM file of the CA that signs the database server's certificate.
        #[arg(long, env = "REGISTRAR_DATABASE_CA", value_name = "PATH")]
        database_ca: Option<PathBuf>,
    },
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

/// `--env ENV_ID`: the environment a command is about. Members and agents
/// may leave it out (their token names theirs); admins give it.
#[derive(Debug, Clone, Args)]
pub struct EnvArg {
    /// Environment id (members and agents may leave it out: their token names it).
    #[arg(
        long = "env",
        value_name = "ENV_ID",
        default_value = "",
        hide_default_value = true
    )]
    pub id: String,
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
        /// The environment.
        #[command(flatten)]
        env: EnvArg,
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
        /// Log in to the registry with the credential first; a credential
        /// it rejects is not recorded.
        #[arg(long)]
        verify: bool,
        /// Idempotency key: a retry with the same id returns the first result.
        #[arg(long, default_value = "", hide_default_value = true)]
        request_id: String,
    },
    /// List an environment's registries.
    #[command(alias = "ls")]
    List {
        /// The environment.
        #[command(flatten)]
        env: EnvArg,
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
        /// Log in to the registry with the new credential first; a
        /// credential it rejects is not recorded.
        #[arg(long)]
        verify: bool,
    },
    /// Log in to the registry with its current credential and record the
    /// result; exits 1 when the registry does not accept it.
    Verify {
        /// Registry id.
        id: String,
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
    /// The environment.
    #[command(flatten)]
    pub env: EnvArg,
}

/// `registrar watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Connection and output.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The environment.
    #[command(flatten)]
    pub env: EnvArg,
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
        /// The environment.
        #[command(flatten)]
        env: EnvArg,
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
    /// The environment.
    #[command(flatten)]
    pub env: EnvArg,
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
    /// The environment.
    #[command(flatten)]
    pub env: EnvArg,
    /// metadata.name of the Secret (default `registrar-pull-secret`).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub name: String,
    /// metadata.namespace of the Secret.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub namespace: String,
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
