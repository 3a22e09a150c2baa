//! The server's configuration turned into the settings of its parts: watch
//! streams, transport limits, the ECR refresher.

use std::time::Duration;

use crate::api::WatchSettings;
use crate::config::ServeConfig;
use crate::ecr::RefresherSettings;

/// Returns the watch stream settings of a configuration.
pub fn watch_settings(config: &ServeConfig) -> WatchSettings {
    WatchSettings {
        stall_timeout: Duration::from_millis(config.watch_stall_ms),
        bookmark_every: Duration::from_millis(config.watch_bookmark_ms.max(1)),
        max_per_token: config.max_watches_per_token.max(1),
        pace: Duration::from_millis(config.watch_pace_ms),
    }
}

/// What one client may ask of the server: sizes, concurrency, time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest RegistryService request, in bytes.
    pub max_request_bytes: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Calls in progress per connection; more are shed.
    pub max_calls_per_connection: usize,
    /// Time a call may take to answer.
    pub request_timeout: Duration,
    /// Interval of HTTP/2 pings.
    pub keepalive_interval: Duration,
    /// Time to wait for a ping's answer before dropping the peer.
    pub keepalive_timeout: Duration,
    /// The TLS settings to serve with (identity, client CA); `None` serves
    /// plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

/// Largest request of the services other than RegistryService: their
/// messages hold ids, names, images and the whitelist.
pub const SMALL_REQUEST_BYTES: usize = 64 * 1024;

/// Returns the limits of a configuration.
pub fn limits(config: &ServeConfig) -> Limits {
    Limits {
        max_request_bytes: config.max_request_bytes.max(1024),
        max_concurrent_streams: config.max_concurrent_streams.max(1),
        max_calls_per_connection: config.max_calls_per_connection.max(1),
        request_timeout: Duration::from_millis(config.request_timeout_ms.max(1)),
        keepalive_interval: Duration::from_secs(config.keepalive_secs.max(1)),
        keepalive_timeout: Duration::from_secs(config.keepalive_timeout_secs.max(1)),
        tls: None,
    }
}

/// Returns the ECR refresher settings of a configuration.
pub fn ecr_settings(config: &ServeConfig) -> RefresherSettings {
    RefresherSettings {
        poll: Duration::from_millis(config.ecr_poll_ms.max(10)),
        ..RefresherSettings::default()
    }
}

/// Returns the limits of one login to a registry.
pub fn verify_limits(config: &ServeConfig) -> crate::verify::Limits {
    let total = Duration::from_secs(config.verify_timeout_secs.max(1));
    crate::verify::Limits {
        total,
        connect: crate::verify::Limits::default().connect.min(total),
        ..crate::verify::Limits::default()
    }
}

/// Returns the background credential check's settings.
pub fn verify_schedule(config: &ServeConfig) -> crate::verify::ScheduleSettings {
    crate::verify::ScheduleSettings {
        interval: config.verify_interval.0,
        concurrency: 4,
    }
}
