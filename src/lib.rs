//! registrar keeps private container-registry credentials for orchestrator
//! environments and tells agents whether they may pull an image, and with
//! which credential. It is an event-sourced gRPC service.
//!
//! Layout. Dependencies point down this list, never up
//! (api → app/projection/adapters → store/crypto → domain):
//!
//! - `server`: `run`, the only way to start (main and the test harness
//!   alike): opens the data directory, the key and the store, bootstraps the
//!   admin token, serves. With `api` and `cli`, the only modules that name
//!   tonic.
//! - `api`: the tonic services: convert the request, call `app`, map the
//!   error (one table, `api/error.rs`). Names no `store` item and builds no
//!   domain error; authentication metadata and TLS peer certificates only.
//! - `app`: every use case, with the caller's role and scope checked there:
//!   commands (the one writer, each commit with its data keys), reads,
//!   pulls, host files, pull secrets, watches, tokens, key rotation.
//! - `projection`: the in-memory read model, folded from the log by one task.
//! - `adapters`: pure translations into Cattle, Kubernetes and host formats;
//!   no I/O, no clock.
//! - `ecr`: the ECR token refresher and its signed HTTPS client (hyper, not
//!   tonic).
//! - `verify`: the login a Docker client makes, with which `app` checks
//!   credentials against their registries (hyper, not tonic), and the
//!   background check that runs over `app` as the ECR refresher does.
//! - `store`: the `EventLog` and `KeyStore` contract and its conformance
//!   suite, the record codec and event payloads; backends as siblings:
//!   `store/sled/` (the only module naming sled), `store/postgres/` (the
//!   only one naming tokio-postgres) and `store/memory.rs`.
//! - `crypto`: data keys, AES-256-GCM sealing, the key-encryption keys and
//!   their rotation.
//! - `domain`: pure rules: addresses, images, credentials, settings,
//!   commands, events, `decide`, quotas and the fold (`State::apply`).
//!   Imports std, serde, thiserror and secrecy; no I/O, no async.
//! - `config` (the server's flags), `telemetry` (logging, text or JSON),
//!   `metrics` (every Prometheus metric and its registry; names neither
//!   tonic nor a store: the gRPC layer and the `/metrics` listener are in
//!   `server/`), `audit` (the audit trail's sink and entry; `api/audit.rs`
//!   fills the entries), `timestamp` (protobuf time, shared by `store` and
//!   `api`).
//! - `cli`: the clients beside the server: the people's CLI and its
//!   grammar (`cli/args.rs`), the docker credential helper
//!   (`src/bin/docker-credential-registrar.rs`) and the kubelet credential
//!   provider. They talk gRPC only, through the generated clients in `pb`.
//! - `testing` (feature `testing`, never in a release build): the
//!   in-process harness, a clock the test sets, a sealer without keys and
//!   the fuzz checks that `fuzz/` and `tests/fuzz_corpus.rs` run.

pub mod adapters;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod ecr;
pub mod metrics;
pub mod projection;
pub mod server;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timestamp;
pub mod verify;

/// The API's generated types (`registrar.v1`).
pub mod pb {
    #![allow(
        missing_docs,
        unreachable_pub,
        missing_debug_implementations,
        clippy::all
    )]
    tonic::include_proto!("registrar.v1");
}

/// The PullService server as served: the same service, whose Watch
/// stream sends messages already encoded ([`api::Encoded`]).
pub(crate) mod pb_served {
    #![allow(
        missing_docs,
        unreachable_pub,
        missing_debug_implementations,
        dead_code,
        clippy::all
    )]
    include!(concat!(env!("OUT_DIR"), "/shared/registrar.v1.rs"));
}

/// The log's generated event types (`registrar.event.v1`).
pub mod event_pb {
    #![allow(
        missing_docs,
        unreachable_pub,
        missing_debug_implementations,
        clippy::all
    )]
    tonic::include_proto!("registrar.event.v1");
}
