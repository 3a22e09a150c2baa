//! The time the app decides with: the system clock in production, a clock
//! a test sets (`testing::ManualClock`; ECR tokens from the test AWS mock
//! carry 2015 expiries).

use std::fmt::Debug;
use std::time::SystemTime;

/// A source of the current time.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Returns the current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
