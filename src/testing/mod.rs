//! Test support, built only with the `testing` feature (the crate's own
//! tests, the integration tests and the fuzz crate turn it on; a release
//! build contains none of it): the in-process server harness, a clock the
//! test sets, a sealer without keys for `decide`, the fuzz checks, and
//! gRPC calls as raw bytes.

pub mod fuzzing;
mod harness;
pub mod postgres;
pub mod raw;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use secrecy::SecretString;

pub use harness::Running;

use crate::app::Clock;
use crate::domain::credential::{SealedSecret, Sealer, SecretContext};

/// A clock that stands still until it is set or advanced.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// Returns a clock showing `now`.
    pub fn new(now: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    /// Sets the time.
    pub fn set(&self, now: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A sealer without keys for running `decide` in the tests and the fuzz
/// targets: its "ciphertext" names only the context it was bound to
/// (`environment|registry|credential|version|field`), never the secret.
#[derive(Debug, Default)]
pub struct ContextSealer;

impl Sealer for ContextSealer {
    fn seal(&mut self, ctx: SecretContext<'_>, _secret: &SecretString) -> SealedSecret {
        SealedSecret {
            nonce: vec![0; 12],
            ciphertext: format!(
                "{}|{}|{}|{}|{}",
                ctx.environment_id, ctx.registry_id, ctx.credential_id, ctx.version, ctx.field
            )
            .into_bytes(),
        }
    }
}

/// Opens a stopped data directory's sled database raw, with a page cache
/// of `cache_bytes`, to read or damage its trees. Waits, like the store,
/// for the lock that a store closed a moment ago still holds while sled's
/// threads let go of it.
pub fn open_sled(dir: &std::path::Path, cache_bytes: u64) -> ::sled::Db {
    crate::store::sled::open_db(dir, cache_bytes).expect("open sled")
}
