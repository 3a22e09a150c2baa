//! registrar keeps private container-registry credentials for orchestrator
//! environments and tells agents whether they may pull an image, and with
//! which credential. It is an event-sourced gRPC service.
//!
//! Layout (dependencies point down this list, never up):
//!
//! - `api`: tonic services, authentication, proto <-> domain conversion and
//!   the error -> status table. With `server` and the clients in `cli`, the
//!   only modules that know tonic.
//! - `app`: the one writer: decide, store data keys, append, answer retries.
//! - `projection`: the in-memory read model, folded from the log by one task.
//! - `store`: the `EventLog` and `KeyStore` traits, sled and memory
//!   implementations, the record codec and event payloads.
//! - `crypto`: data keys, AES-256-GCM sealing, the key-encryption key.
//! - `domain`: pure rules: addresses, credentials, settings, commands, events,
//!   `decide` and the fold (`State::apply`). No I/O, no async.
//! - `config`, `telemetry`, `server`: flags, logging, and `run`.
//! - `cli`: the clients of the API beside the server: the people's CLI
//!   (`registrar env|registry|settings|...`), the docker credential helper
//!   (`src/bin/docker-credential-registrar.rs`) and the kubelet credential
//!   provider. They talk gRPC only, through the generated clients in `pb`.
//! - `fuzzing`: the checks the fuzz targets (`fuzz/`) and the corpus replay
//!   (`tests/fuzz_corpus.rs`) run on arbitrary bytes; not part of the API.

pub mod adapters;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod ecr;
pub mod projection;
pub mod server;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timestamp;

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
