//! Bounds on what one environment can make the server hold: registries and
//! the CA bundles they carry. Checked on a decision before it is recorded,
//! so a command over a bound changes nothing. Tested with `decide` in
//! `decide_tests.rs`.

use super::decide::Decision;
use super::error::{Error, Result};
use super::event::Event;
use super::state::State;

/// The bounds, set by the operator (`registrar serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Registries one environment may have.
    pub registries_per_environment: usize,
    /// Bytes of CA bundles all registries of one environment may carry.
    pub ca_bytes_per_environment: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            registries_per_environment: 1_000,
            ca_bytes_per_environment: 1024 * 1024,
        }
    }
}

/// Checks that the state after `decision` keeps every environment it
/// touches within `quotas`. Only growth is refused: a decision that leaves
/// an environment where it was (or smaller) passes, even above a bound an
/// operator lowered since.
///
/// The bound guards memory, not an exact count: registries at different
/// addresses are different streams, so creations decided at the same
/// moment do not conflict, and an environment can pass its bound by as many
/// creations as were in flight together (each connection has at most
/// `--max-calls-per-connection` calls in flight).
pub fn check(state: &State, decision: &Decision, quotas: &Quotas) -> Result<()> {
    for event in decision.appends.iter().flat_map(|a| &a.events) {
        match event {
            Event::RegistryCreated {
                environment_id,
                ca_certificate_pem,
                ..
            } => {
                let count = state.registries_in(environment_id, "").count();
                if count >= quotas.registries_per_environment {
                    return Err(Error::QuotaExceeded(format!(
                        "environment {environment_id} has {count} registries, the most it may have \
                         (--max-registries-per-environment {}); delete one first",
                        quotas.registries_per_environment
                    )));
                }
                check_ca(
                    state,
                    environment_id,
                    None,
                    ca_certificate_pem.len(),
                    quotas,
                )?;
            }
            Event::CredentialReplaced {
                registry_id,
                ca_certificate_pem,
                ..
            } => {
                if let Some(reg) = state.registry(registry_id) {
                    check_ca(
                        state,
                        &reg.environment_id,
                        Some(reg),
                        ca_certificate_pem.len(),
                        quotas,
                    )?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks the environment's CA bytes with `replaced`'s bundle (if any)
/// taken out and `new` bytes put in.
fn check_ca(
    state: &State,
    environment_id: &str,
    replaced: Option<&super::state::Registry>,
    new: usize,
    quotas: &Quotas,
) -> Result<()> {
    let old = replaced.map_or(0, |r| r.ca_certificate_pem.len());
    if new <= old {
        return Ok(());
    }
    let total: usize = state
        .registries_in(environment_id, "")
        .map(|r| r.ca_certificate_pem.len())
        .sum();
    let after = total - old + new;
    if after > quotas.ca_bytes_per_environment {
        return Err(Error::QuotaExceeded(format!(
            "the CA bundles of environment {environment_id} would take {after} bytes, more than \
             the {} allowed (--max-ca-bytes-per-environment)",
            quotas.ca_bytes_per_environment
        )));
    }
    Ok(())
}
