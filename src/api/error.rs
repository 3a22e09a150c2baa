//! The one table from app errors to gRPC statuses. Messages never carry a
//! secret; storage and crypto causes are logged here and not echoed.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::app::Error;
use crate::domain::error::Error as Rule;

/// Longest status message sent: messages may quote the request (an id, an
/// address), and an unbounded one would exceed the peer's header limit and
/// cost the caller its connection.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1024;

/// Cuts a message to `MAX_MESSAGE_BYTES` on a character boundary.
pub(crate) fn bounded(message: &str) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let status = status(e);
        if status.message().len() <= MAX_MESSAGE_BYTES {
            return status;
        }
        Status::with_details(
            status.code(),
            bounded(status.message()),
            status.details().to_vec().into(),
        )
    }
}

fn status(e: Error) -> Status {
    {
        match e {
            Error::Domain(Rule::Invalid { field, message }) => invalid(field, &message),
            Error::Domain(rule @ Rule::NotFound { .. }) => Status::not_found(rule.to_string()),
            Error::Domain(Rule::FailedPrecondition(m)) => Status::failed_precondition(m),
            Error::Domain(Rule::PermissionDenied(m)) => Status::permission_denied(m),
            Error::Domain(Rule::QuotaExceeded(m)) => Status::resource_exhausted(m),
            e @ Error::Conflict => Status::aborted(e.to_string()),
            e @ Error::RequestReused(_) => Status::already_exists(e.to_string()),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            // The store refuses most writes before they reach the disk, but
            // a failed flush leaves the outcome open: the retry settles it.
            Error::StorageFull => Status::resource_exhausted(
                "the data directory is full: free space, then retry with the same request_id",
            ),
            // Retryable: the database comes back, the replica catches up.
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "the database is unreachable");
                Status::unavailable(
                    "the database is unreachable; nothing may have been written: retry with the same request_id",
                )
            }
            e @ Error::Behind { .. } => Status::unavailable(e.to_string()),
            Error::Storage(cause) => {
                tracing::error!(error = %cause, "storage failure");
                Status::internal("storage failure; see the server log")
            }
            Error::Crypto(cause) => {
                tracing::error!(error = %cause, "crypto failure");
                Status::internal("a sealed secret could not be processed; see the server log")
            }
        }
    }
}

/// Returns INVALID_ARGUMENT with a `BadRequest` naming `field`.
pub(crate) fn invalid(field: &str, description: &str) -> Status {
    let description = bounded(description);
    // Messages from the address parser already start with the field's name.
    let message = if description.starts_with(field) {
        description.clone()
    } else {
        bounded(&format!("{field}: {description}"))
    };
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
        assert!(cut.ends_with("..."));
        let status = Status::from(Error::Domain(Rule::NotFound {
            what: "registry",
            id: "x".repeat(100_000),
        }));
        assert!(status.message().len() <= MAX_MESSAGE_BYTES);
        assert_eq!(status.code(), Code::NotFound);
    }
}
