//! Wall-clock time for signing and credential expiry, behind a trait so tests can fix it.

use std::fmt;
use std::time::SystemTime;

/// Source of wall-clock time, replaceable in tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
