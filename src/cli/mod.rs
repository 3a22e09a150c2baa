//! The clients of the gRPC API: the human CLI (`registrar env|registry|...`),
//! the docker credential helper and the kubelet image credential provider.
//! Exit codes: 0 ok, 1 the server said no, 2 usage, 3 cannot connect.

pub mod args;
mod commands;
pub mod connect;
pub mod credential_helper;
pub mod json;
pub mod kubelet;
pub mod table;

use std::process::ExitCode;

use tonic::{Code, Status};

use args::Command;

/// Exit code: the server refused, or a pull is denied.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: bad usage (also clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the server cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Why a client command failed. Messages never carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or local input is wrong.
    #[error("{0}")]
    Usage(String),
    /// The server cannot be reached.
    #[error("cannot connect to {server}: {cause}")]
    Connect {
        /// The URL dialled.
        server: String,
        /// What failed.
        cause: String,
    },
    /// The server answered with an error status.
    #[error("{}: {message}{}", code_name(*code), hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Status {
        /// The gRPC code.
        code: Code,
        /// The server's message.
        message: String,
        /// What the caller may do about it.
        hint: Option<String>,
    },
    /// The server denied a pull.
    #[error("pull denied: {0}")]
    Denied(String),
    /// The call succeeded and reports a failure (a credential the registry
    /// did not accept).
    #[error("{0}")]
    Failed(String),
    /// A local file or terminal operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The CLI's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Converts a status; an unreachable server becomes [`Error::Connect`].
    pub fn from_status(server: &str, status: Status) -> Self {
        if status.code() == Code::Unavailable {
            return Self::Connect {
                server: server.to_owned(),
                cause: status.message().to_owned(),
            };
        }
        Self::Status {
            code: status.code(),
            message: status.message().to_owned(),
            hint: None,
        }
    }

    /// Returns the process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Connect { .. } => EXIT_UNREACHABLE,
            Self::Status { .. } | Self::Denied(_) | Self::Failed(_) | Self::Io { .. } => {
                EXIT_REFUSED
            }
        }
    }
}

/// Returns the canonical name of a gRPC code, as grpcurl and the docs print it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Runs a client command (anything but `serve`), printing its output on
/// stdout and its error on stderr, and returns the exit code.
pub async fn main(command: Command) -> ExitCode {
    let result = match command {
        Command::Serve(_) => Err(Error::Usage("`serve` is not a client command".to_owned())),
        Command::KubeletCredentialProvider(args) => kubelet::run(&args).await,
        other => commands::run(other).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_tell_refusal_usage_and_unreachable_apart() {
        let refused = Error::from_status("http://h", Status::not_found("registry x not found"));
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(refused.to_string(), "NOT_FOUND: registry x not found");
        assert_eq!(Error::Usage("bad".into()).exit_code(), 2);
        let gone = Error::from_status("http://h", Status::unavailable("connection refused"));
        assert_eq!(gone.exit_code(), 3);
        assert_eq!(
            gone.to_string(),
            "cannot connect to http://h: connection refused"
        );
    }
}
