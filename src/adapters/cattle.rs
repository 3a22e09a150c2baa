//! Docker Engine API registry auth for Cattle agents: the `AuthConfig` body
//! and the `X-Registry-Auth` header the agent sends with image pulls.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;

use super::{docker_config_key, json_string, PullAuth, REDACTED};

/// Docker Engine API `AuthConfig`, as sent to the daemon when pulling.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthConfig {
    /// User name presented to the registry.
    pub username: String,
    /// Password or token presented to the registry; never printed.
    pub password: String,
    /// Optional e-mail address; empty when unknown.
    pub email: String,
    /// The registry key as Docker clients spell it (see [`docker_config_key`]).
    #[serde(rename = "serveraddress")]
    pub server_address: String,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &REDACTED)
            .field("email", &self.email)
            .field("server_address", &self.server_address)
            .finish()
    }
}

/// Builds the Docker Engine `AuthConfig` for one credential.
///
/// `server_address` is [`docker_config_key`] of the registry, so Docker Hub
/// becomes `https://index.docker.io/v1/` as the Docker CLI sends it.
#[must_use]
pub fn auth_config(auth: &PullAuth<'_>) -> AuthConfig {
    AuthConfig {
        username: auth.username.to_owned(),
        password: auth.password.to_owned(),
        email: auth.email.to_owned(),
        server_address: docker_config_key(auth.registry),
    }
}

/// Returns the `X-Registry-Auth` header value for an `AuthConfig`.
///
/// The value is base64url *with* padding (Go's `base64.URLEncoding`) of the
/// compact JSON `{"username","password","email","serveraddress"}`, which is
/// what the Docker daemon's `registry.DecodeAuthConfig` decodes; the daemon
/// also accepts standard base64, but clients send the URL alphabet because
/// `+` and `/` are awkward in headers.
#[must_use]
pub fn x_registry_auth(config: &AuthConfig) -> String {
    let json = format!(
        "{{\"username\":{},\"password\":{},\"email\":{},\"serveraddress\":{}}}",
        json_string(&config.username),
        json_string(&config.password),
        json_string(&config.email),
        json_string(&config.server_address),
    );
    URL_SAFE.encode(json)
}

#[cfg(test)]
mod tests {
    use super::super::DOCKER_HUB;
    use super::*;

    fn auth<'a>(registry: &'a str, username: &'a str, password: &'a str) -> PullAuth<'a> {
        PullAuth {
            registry,
            username,
            password,
            email: "",
        }
    }

    /// Decodes the header exactly as the daemon does: URL alphabet, padded, then JSON.
    fn daemon_decode(header: &str) -> AuthConfig {
        let bytes = URL_SAFE.decode(header).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn auth_config_maps_fields_and_hub_key() {
        let c = auth_config(&PullAuth {
            registry: DOCKER_HUB,
            username: "bob",
            password: "pw",
            email: "bob@example.com",
        });
        assert_eq!(c.username, "bob");
        assert_eq!(c.password, "pw");
        assert_eq!(c.email, "bob@example.com");
        assert_eq!(c.server_address, "https://index.docker.io/v1/");

        let c = auth_config(&auth("reg.example.com:5000", "u", "p"));
        assert_eq!(c.server_address, "reg.example.com:5000");
    }

    #[test]
    fn golden_plain() {
        let header = x_registry_auth(&auth_config(&auth(
            "reg.example.com:5000",
            "alice",
            "s3cret",
        )));
        let json = r#"{"username":"alice","password":"s3cret","email":"","serveraddress":"reg.example.com:5000"}"#;
        assert_eq!(header, URL_SAFE.encode(json));
        // Computed with Python's base64.urlsafe_b64encode; pins the bytes
        // independently of the engine under test.
        assert_eq!(
            header,
            "eyJ1c2VybmFtZSI6ImFsaWNlIiwicGFzc3dvcmQiOiJzM2NyZXQiLCJlbWFpbCI6IiIsInNlcnZlcmFkZHJlc3MiOiJyZWcuZXhhbXBsZS5jb206NTAwMCJ9"
        );
    }

    #[test]
    fn golden_escaped_password() {
        let password = "q\"b\\s\u{e9}\u{1F980}\n";
        let header = x_registry_auth(&auth_config(&PullAuth {
            registry: DOCKER_HUB,
            username: "bob",
            password,
            email: "bob@example.com",
        }));
        let json = "{\"username\":\"bob\",\"password\":\"q\\\"b\\\\s\u{e9}\u{1F980}\\n\",\
                    \"email\":\"bob@example.com\",\"serveraddress\":\"https://index.docker.io/v1/\"}";
        assert_eq!(header, URL_SAFE.encode(json));
        let back = daemon_decode(&header);
        assert_eq!(back.password, password);
        assert_eq!(back.server_address, "https://index.docker.io/v1/");
    }

    #[test]
    fn golden_url_alphabet_and_padding() {
        // Chosen so the encoding needs both URL-only digits, and the 70-byte
        // JSON needs two padding characters. Expected value from Python's
        // base64.urlsafe_b64encode.
        let config = auth_config(&auth("r.io", "u", "?>?~~~"));
        let header = x_registry_auth(&config);
        let json = r#"{"username":"u","password":"?>?~~~","email":"","serveraddress":"r.io"}"#;
        assert_eq!(header, URL_SAFE.encode(json));
        assert_eq!(
            header,
            "eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6Ij8-P35-fiIsImVtYWlsIjoiIiwic2VydmVyYWRkcmVzcyI6InIuaW8ifQ=="
        );
        assert!(header.contains('-'), "{header}");
        assert!(!header.contains('+') && !header.contains('/'), "{header}");
        assert!(header.ends_with('='), "{header}");
        assert_eq!(daemon_decode(&header), config);
    }

    #[test]
    fn decode_back_as_the_daemon_does() {
        for password in ["", "plain", "a\"b", "\\", "\u{0}\u{1f}", "日本語", "+/="] {
            let config = auth_config(&PullAuth {
                registry: "[::1]:5000",
                username: "user",
                password,
                email: "e@x",
            });
            let header = x_registry_auth(&config);
            assert_eq!(daemon_decode(&header), config, "{password:?}");
        }
    }

    #[test]
    fn serde_field_names_match_the_engine_api() {
        let config = auth_config(&auth("r.io", "u", "p"));
        let value = serde_json::to_value(&config).unwrap();
        assert_eq!(value["serveraddress"], "r.io");
        assert!(value.get("server_address").is_none());
    }

    #[test]
    fn debug_redacts_the_password() {
        let config = auth_config(&auth("r.io", "u", "topsecret-pw"));
        let printed = format!("{config:?} {config:#?}");
        assert!(!printed.contains("topsecret-pw"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }
}
