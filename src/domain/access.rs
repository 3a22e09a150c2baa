//! Who is calling and what they may touch (R1, DESIGN §5 authentication).

use super::error::{Error, Result};
use super::event::Role;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's id; recorded as the actor of commands.
    pub token_id: String,
    /// The token's role.
    pub role: Role,
    /// The token's environment; `None` for admins.
    pub environment_id: Option<String>,
}

impl Principal {
    /// Returns the principal of the server itself, for start-up commands.
    pub fn system() -> Self {
        Self {
            token_id: "system".to_owned(),
            role: Role::Admin,
            environment_id: None,
        }
    }

    /// Returns whether the caller may see anything of `environment_id` (R1).
    pub fn sees(&self, environment_id: &str) -> bool {
        self.role == Role::Admin || self.environment_id.as_deref() == Some(environment_id)
    }

    /// Checks that the caller may manage the registries of `environment_id`.
    /// Another environment is answered like a missing one.
    pub fn check_manage(&self, environment_id: &str, what: &'static str, id: &str) -> Result<()> {
        if !self.sees(environment_id) {
            return Err(Error::NotFound {
                what,
                id: id.to_owned(),
            });
        }
        match self.role {
            Role::Admin | Role::Member => Ok(()),
            Role::Agent => Err(Error::PermissionDenied(
                "agent tokens may resolve, watch and read host configuration, not change registries".to_owned(),
            )),
        }
    }

    /// Checks that the caller is an admin.
    pub fn check_admin(&self, what: &str) -> Result<()> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "{what} is for admin tokens only"
            )))
        }
    }

    /// Returns the environment a request is about: the one given, or the
    /// caller's own when none is given. Another environment is NOT_FOUND.
    pub fn scope<'a>(&'a self, given: &'a str) -> Result<&'a str> {
        let env = if given.is_empty() {
            self.environment_id
                .as_deref()
                .ok_or_else(|| Error::invalid("environment_id", "is required for admin tokens"))?
        } else {
            given
        };
        if self.sees(env) {
            Ok(env)
        } else {
            Err(Error::NotFound {
                what: "environment",
                id: env.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, env: Option<&str>) -> Principal {
        Principal {
            token_id: "t".into(),
            role,
            environment_id: env.map(str::to_owned),
        }
    }

    #[test]
    fn another_environment_looks_missing() {
        let member = p(Role::Member, Some("a"));
        assert!(matches!(
            member.check_manage("b", "registry", "r1"),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(member.scope("b"), Err(Error::NotFound { .. })));
    }

    #[test]
    fn agents_may_not_change_registries() {
        let agent = p(Role::Agent, Some("a"));
        assert!(matches!(
            agent.check_manage("a", "registry", "r1"),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn scope_defaults_to_the_token_environment() {
        assert_eq!(p(Role::Agent, Some("a")).scope("").unwrap(), "a");
        assert!(p(Role::Admin, None).scope("").is_err());
        assert_eq!(p(Role::Admin, None).scope("z").unwrap(), "z");
    }
}
