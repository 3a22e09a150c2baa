//! Callers: bearer tokens checked against the projection's hashes, tokens
//! issued and recorded, and a caller checked again while a long call
//! (a watch) lasts.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{new_id, App, Error, Result};
use crate::domain::access::Principal;
use crate::domain::command::Command;
use crate::domain::error::Error as Rule;
use crate::domain::event::Role;

/// The actor id of the admin token given in the configuration.
pub(super) const CONFIGURED_ADMIN: &str = "configured-admin";
/// Prefix of bearer tokens, so they are recognizable in a secret scanner.
pub const TOKEN_PREFIX: &str = "rgr";

/// A token just issued: its secret is shown once.
#[derive(Debug)]
pub struct IssuedToken {
    /// The public id.
    pub token_id: String,
    /// The bearer secret.
    pub token: secrecy::SecretString,
}

/// The longest authentication waits for this replica to catch up with
/// the shared log before it refuses a token it does not know.
const FRESH_TOKEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl App {
    /// Authenticates a bearer token (`rgr.<id>.<secret>`).
    pub fn authenticate(&self, bearer: &str) -> Result<Principal> {
        if let Some(admin) = &self.configured_admin {
            let presented: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
            if bool::from(admin.ct_eq(&presented)) {
                return Ok(Principal {
                    token_id: CONFIGURED_ADMIN.to_owned(),
                    role: Role::Admin,
                    environment_id: None,
                });
            }
        }
        let invalid = || Error::Unauthenticated("the bearer token is not valid".to_owned());
        let Some((id, secret)) = split_token(bearer) else {
            return Err(invalid());
        };
        let state = self.projection.read();
        let token = state.token(id).ok_or_else(invalid)?;
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !bool::from(token.secret_sha256.ct_eq(&hash)) {
            return Err(invalid());
        }
        Ok(Principal {
            token_id: token.id.clone(),
            role: token.role,
            environment_id: token.environment_id.clone(),
        })
    }

    /// Authenticates like `authenticate`, but a token this replica does
    /// not know yet (minted through another replica, or offline, a moment
    /// ago) is looked up again once this replica has caught up with the
    /// shared log's head, for at most `FRESH_TOKEN_WAIT`.
    pub async fn authenticate_fresh(&self, bearer: &str) -> Result<Principal> {
        let first = self.authenticate(bearer);
        let unknown = first.is_err()
            && split_token(bearer)
                .is_some_and(|(id, _)| self.projection.read().token(id).is_none());
        if !unknown {
            return first;
        }
        let caught_up = tokio::time::timeout(FRESH_TOKEN_WAIT, async {
            if let Ok(head) = self.log.refresh_head().await {
                self.projection.wait_for(head).await;
            }
        })
        .await;
        if caught_up.is_err() {
            return first;
        }
        self.authenticate(bearer)
    }

    /// Checks that an authenticated caller still holds: its token is not
    /// revoked and its environment not deleted. Long-lived calls (watch
    /// streams) ask again after every change. The configured admin token
    /// and client certificates are not in the log and cannot be revoked.
    pub fn check_still_valid(&self, who: &Principal) -> Result<()> {
        let state = self.projection.read();
        let from_log = who.token_id != CONFIGURED_ADMIN && !who.token_id.starts_with("cert:");
        if from_log && state.token(&who.token_id).is_none() {
            return Err(Error::Unauthenticated(
                "the token was revoked; the stream ends".to_owned(),
            ));
        }
        if let Some(env) = &who.environment_id {
            if state.environment(env).is_none() {
                return Err(Rule::NotFound {
                    what: "environment",
                    id: env.clone(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Issues a token with a fresh secret; the secret is in the answer only.
    pub async fn create_token(
        &self,
        who: &Principal,
        role: Option<Role>,
        environment_id: String,
        description: String,
    ) -> Result<(IssuedToken, u64)> {
        let issued = IssuedToken::generate();
        let revision = self
            .issue_token(who, role, environment_id, description, &issued)
            .await?;
        Ok((issued, revision))
    }

    /// Records a token whose secret the caller generated (the bootstrap
    /// admin token is written to its file before it is recorded); returns
    /// the position of its commit.
    pub async fn issue_token(
        &self,
        who: &Principal,
        role: Option<Role>,
        environment_id: String,
        description: String,
        token: &IssuedToken,
    ) -> Result<u64> {
        let secret = token
            .secret()
            .ok_or_else(|| Error::Unauthenticated("malformed token".to_owned()))?;
        let secret_sha256: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.execute(who, "", &[], || Command::CreateToken {
            token_id: token.token_id.clone(),
            role,
            environment_id: environment_id.clone(),
            description: description.clone(),
            secret_sha256,
        })
        .await
        .map(|done| done.revision)
    }
}

impl IssuedToken {
    /// Generates a token: a random id and 256 random bits of secret.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        use base64::Engine as _;
        let secret = zeroize::Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        );
        let token_id = new_id();
        Self {
            token: secrecy::SecretString::from(format!("{TOKEN_PREFIX}.{token_id}.{}", *secret)),
            token_id,
        }
    }

    /// Parses a token read back from a file.
    pub fn parse(token: &str) -> Option<Self> {
        let (id, _) = split_token(token)?;
        Some(Self {
            token_id: id.to_owned(),
            token: secrecy::SecretString::from(token.to_owned()),
        })
    }

    fn secret(&self) -> Option<&str> {
        use secrecy::ExposeSecret as _;
        split_token(self.token.expose_secret()).map(|(_, s)| s)
    }
}

/// Splits `rgr.<id>.<secret>` into id and secret.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(TOKEN_PREFIX), Some(id), Some(secret)) if !id.is_empty() && secret.len() >= 32 => {
            Some((id, secret))
        }
        _ => None,
    }
}
