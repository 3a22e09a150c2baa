//! The app's error: domain refusals, storage and crypto faults, and the
//! outcomes of concurrency and idempotency checks.

use crate::{crypto, domain, store};

/// What can go wrong while executing a command or serving a read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule refused the command.
    #[error(transparent)]
    Domain(#[from] domain::error::Error),
    /// The stream changed under the command on every retry.
    #[error("the object changed concurrently; retry the request")]
    Conflict,
    /// A request id was reused for a different request.
    #[error("request_id {0:?} was already used for a different request")]
    RequestReused(String),
    /// No valid token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The disk is full: nothing was written.
    #[error("the data directory is full; the write was not made")]
    StorageFull,
    /// The shared database cannot be reached now.
    #[error("{0}")]
    Unavailable(String),
    /// This replica has not applied the position a read asked for in time.
    #[error("replica at {at}, asked for {asked}")]
    Behind {
        /// The position this replica has applied.
        at: u64,
        /// The `min_revision` of the read.
        asked: u64,
    },
    /// The log failed.
    #[error("storage: {0}")]
    Storage(store::Error),
    /// Sealing or opening failed.
    #[error("crypto: {0}")]
    Crypto(#[from] crypto::Error),
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::StorageFull => Error::StorageFull,
            store::Error::Unavailable(cause) => Error::Unavailable(cause),
            other => Error::Storage(other),
        }
    }
}

/// Results of the app.
pub type Result<T, E = Error> = std::result::Result<T, E>;
