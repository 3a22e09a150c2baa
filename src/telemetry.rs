//! Tracing subscriber setup: `RUST_LOG` filters, `info` by default. Spans and
//! events never record requests or secrets.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to standard error.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
