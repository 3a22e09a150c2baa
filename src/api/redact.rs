//! Redacting Debug for the generated messages that carry secrets, so a
//! stray `{:?}` can never print a password, key or token.

use std::fmt;

use crate::pb;

const REDACTED: &str = "[redacted]";

fn secret(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        REDACTED
    }
}

impl fmt::Debug for pb::CreateRegistryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateRegistryRequest")
            .field("environment_id", &self.environment_id)
            .field("kind", &self.kind)
            .field("address", &self.address)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("insecure", &self.insecure)
            .field("ca_certificate_pem", &self.ca_certificate_pem.len())
            .field("ecr", &self.ecr)
            .field("request_id", &self.request_id)
            .field("expire_time", &self.expire_time)
            .finish()
    }
}

impl fmt::Debug for pb::UpdateRegistryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateRegistryRequest")
            .field("id", &self.id)
            .field("address", &self.address)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("insecure", &self.insecure)
            .field(
                "ca_certificate_pem",
                &self.ca_certificate_pem.as_ref().map(String::len),
            )
            .field("request_id", &self.request_id)
            .field("expire_time", &self.expire_time)
            .field("ecr", &self.ecr)
            .finish()
    }
}

impl fmt::Debug for pb::EcrCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &secret(&self.secret_access_key))
            .finish()
    }
}

impl fmt::Debug for pb::PullCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullCredential")
            .field("registry_id", &self.registry_id)
            .field("credential_id", &self.credential_id)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .finish()
    }
}

impl fmt::Debug for pb::DockerAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerAuthConfig")
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("email", &self.email)
            .field("server_address", &self.server_address)
            .finish()
    }
}

impl fmt::Debug for pb::CattleAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CattleAuth")
            .field("auth_config", &self.auth_config)
            .field("x_registry_auth", &secret(&self.x_registry_auth))
            .finish()
    }
}

impl fmt::Debug for pb::KubernetesAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesAuth")
            .field("docker_config_json", &secret(&self.docker_config_json))
            .field(
                "credential_provider_response",
                &secret(&self.credential_provider_response),
            )
            .finish()
    }
}

impl fmt::Debug for pb::CreateTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateTokenResponse")
            .field("token_id", &self.token_id)
            .field("token", &secret(&self.token))
            .finish()
    }
}

impl fmt::Debug for pb::GetPullSecretResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetPullSecretResponse")
            .field("secret_manifest", &secret(&self.secret_manifest))
            .field("docker_config_json", &secret(&self.docker_config_json))
            .field("revision", &self.revision)
            .finish()
    }
}

/// Host files of the K3S format with `include_auth` carry passwords: their
/// content is shown as its length only.
impl fmt::Debug for pb::HostFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFile")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("content_len", &self.content.len())
            .finish()
    }
}

impl fmt::Debug for pb::GetHostConfigResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetHostConfigResponse")
            .field("files", &self.files)
            .field("revision", &self.revision)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_secret_bearing_requests_hides_the_secret() {
        let r = pb::CreateRegistryRequest {
            password: "hunter2-MARK".into(),
            username: "alice".into(),
            ..Default::default()
        };
        let s = format!("{r:?}");
        assert!(s.contains("alice") && !s.contains("MARK"), "{s}");
        let t = pb::CreateTokenResponse {
            token_id: "id".into(),
            token: "rgr.id.SECRETMARK".into(),
            revision: 1,
        };
        assert!(!format!("{t:?}").contains("SECRETMARK"));
        let a = pb::CattleAuth {
            auth_config: Some(pb::DockerAuthConfig {
                password: "PWMARK".into(),
                ..Default::default()
            }),
            x_registry_auth: "XRAMARK".into(),
        };
        let s = format!("{a:?}");
        assert!(!s.contains("PWMARK") && !s.contains("XRAMARK"), "{s}");
        let h = pb::GetHostConfigResponse {
            files: vec![pb::HostFile {
                path: "registries.yaml".into(),
                mode: 0o600,
                content: "configs:\n  r.io:\n    auth:\n      password: K3SMARK\n".into(),
            }],
            revision: 7,
        };
        let s = format!("{h:?}");
        assert!(
            s.contains("registries.yaml") && !s.contains("K3SMARK"),
            "{s}"
        );
    }
}
