//! The only place that reads flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// The key-encryption key itself (base64 of 32 bytes), instead of a file.
    #[arg(
        long = "key-from-env",
        env = "REGISTRAR_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub key_value: Option<String>,
    /// An admin token to accept; when set, no admin.token file is written.
    #[arg(
        long = "admin-token-from-env",
        env = "REGISTRAR_ADMIN_TOKEN",
        hide_env_values = true,
        hide = true
    )]
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
}

impl ServeConfig {
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

    /// Returns a configuration for tests: a data directory, a key file beside it.
    pub fn for_dir(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            key_file: None,
            key_value: None,
            admin_token: None,
            watch_stall_ms: 30_000,
            watch_buffer: 256,
            watch_bookmark_ms: 15_000,
        }
    }
}
