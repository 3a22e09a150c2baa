//! Built-in ECR token refresh (R14): registrar exchanges an ECR registry's
//! IAM access keys for its 12-hour token, records the token as an event, and
//! refreshes it at the latest at half its lifetime, with jittered backoff on
//! failure. No separate updater service is needed.

mod client;
mod refresher;

pub use client::{
    endpoint_for, EcrToken, Endpoint, FetchError, FetchRequest, HttpTokenSource, TokenSource,
};
pub use refresher::{spawn, RefresherSettings};
