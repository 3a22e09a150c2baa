//! The one table from app errors to gRPC statuses. Messages never carry a
//! secret; storage and crypto causes are logged here and not echoed.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::app::Error;
use crate::domain::error::Error as Rule;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Domain(Rule::Invalid { field, message }) => invalid(field, &message),
            Error::Domain(rule @ Rule::NotFound { .. }) => Status::not_found(rule.to_string()),
            Error::Domain(Rule::FailedPrecondition(m)) => Status::failed_precondition(m),
            Error::Domain(Rule::PermissionDenied(m)) => Status::permission_denied(m),
            e @ Error::Conflict => Status::aborted(e.to_string()),
            e @ Error::RequestReused(_) => Status::already_exists(e.to_string()),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            // The store refuses most writes before they reach the disk, but
            // a failed flush leaves the outcome open: the retry settles it.
            Error::StorageFull => Status::resource_exhausted(
                "the data directory is full: free space, then retry with the same request_id",
            ),
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
    // Messages from the address parser already start with the field's name.
    let message = if description.starts_with(field) {
        description.to_owned()
    } else {
        format!("{field}: {description}")
    };
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request_violation(field, description),
    )
}
