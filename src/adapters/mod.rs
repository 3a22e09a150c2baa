//! Pure translations of stored registry credentials into the formats that
//! container runtimes and orchestrator agents consume; no I/O, no clock.
//! Shared here: the credential view, the Docker config key and JSON string quoting.

pub mod admission;
pub mod cattle;
pub mod host_config;
pub mod kubernetes;

use std::fmt;

/// The canonical address of Docker Hub, as every caller spells it.
pub const DOCKER_HUB: &str = "index.docker.io";

/// The key Docker clients have always used for Docker Hub in config files.
const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// One registry credential to translate; the password is a secret.
#[derive(Clone, Copy)]
pub struct PullAuth<'a> {
    /// Canonical registry address (`host[:port]`, or [`DOCKER_HUB`]).
    pub registry: &'a str,
    /// User name presented to the registry.
    pub username: &'a str,
    /// Password or token presented to the registry; never printed.
    pub password: &'a str,
    /// Optional e-mail address; empty when unknown.
    pub email: &'a str,
}

impl fmt::Debug for PullAuth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &REDACTED)
            .field("email", &self.email)
            .finish()
    }
}

/// Stands in for a secret in Debug output, printed without quotes.
struct Redacted;

const REDACTED: Redacted = Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Returns the key Docker clients use for a registry in config files and `AuthConfig.serveraddress`.
///
/// That is `https://index.docker.io/v1/` for Docker Hub, else the address itself.
#[must_use]
pub fn docker_config_key(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

/// Quotes a string as a JSON string literal, exactly as `serde_json` writes it.
///
/// Documents are assembled from such literals so that renderers stay
/// infallible and key order never depends on serde_json's `preserve_order`
/// feature, which another crate in the build could switch on.
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_uses_the_legacy_v1_key() {
        assert_eq!(docker_config_key(DOCKER_HUB), "https://index.docker.io/v1/");
        assert_eq!(
            docker_config_key("reg.example.com:5000"),
            "reg.example.com:5000"
        );
        assert_eq!(docker_config_key("[::1]:5000"), "[::1]:5000");
    }

    #[test]
    fn pull_auth_debug_redacts_the_password() {
        let auth = PullAuth {
            registry: "reg.example.com",
            username: "alice",
            password: "hunter2-secret",
            email: "a@example.com",
        };
        let printed = format!("{auth:?} {auth:#?}");
        assert!(!printed.contains("hunter2-secret"), "{printed}");
        assert!(printed.contains("<redacted>"));
        assert!(printed.contains("alice"));
    }
}
