//! The domain's one error type: a broken rule, a missing object, a refused transition.

/// A command or value that the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field's value breaks a rule; `field` names the request field.
    #[error("{field}: {message}")]
    Invalid {
        /// The request field at fault, as the API names it.
        field: &'static str,
        /// What is wrong and how to fix it; never contains a secret.
        message: String,
    },
    /// The object does not exist, or belongs to another environment (R1).
    #[error("{what} {id:?} not found")]
    NotFound {
        /// The kind of object, e.g. `registry`.
        what: &'static str,
        /// The id the caller asked for.
        id: String,
    },
    /// The command is valid but the object's state does not allow it (R10).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller's role does not allow the command.
    #[error("{0}")]
    PermissionDenied(String),
    /// The command would take an environment past a bound (`quota`).
    #[error("{0}")]
    QuotaExceeded(String),
}

/// Results of the domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Returns an `Invalid` error for `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}
