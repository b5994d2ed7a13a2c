//! Time is a parameter: everything that needs "now" takes a [`Clock`].

use jiff::Timestamp;
use std::sync::Mutex;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current instant (UTC).
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place that reads the wall clock"
    )]
    fn now(&self) -> Timestamp {
        // Stores keep microseconds; a finer "now" would make a response differ from what a
        // later read of the same request or assignment returns.
        crate::schedule::truncate_to_micros(Timestamp::now())
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        if let Ok(mut t) = self.0.lock() {
            *t = at;
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: jiff::SignedDuration) {
        if let Ok(mut t) = self.0.lock() {
            *t = t.saturating_add(by).unwrap_or(*t);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.0.lock().map(|t| *t).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}
