//! The agent's clock, injected: every timestamp the agent takes (event windows, retention,
//! claims, retries) comes from one `Clock`, so a test can drive time.

use aforo_core::Timestamp;
use std::sync::Arc;

/// Where the agent reads the time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The clock of the machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_unix_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }
}

/// The clock every part of the agent holds.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
pub mod test_clock {
    //! A clock a test sets.
    use super::Clock;
    use aforo_core::Timestamp;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// Reads what the test stored last.
    #[derive(Default)]
    pub struct FixedClock(pub AtomicI64);

    impl FixedClock {
        /// A clock at `t`.
        pub fn at(t: Timestamp) -> Self {
            FixedClock(AtomicI64::new(t.unix_nanos()))
        }

        /// Moves it by `ms`.
        pub fn advance_ms(&self, ms: i64) {
            self.0.fetch_add(ms * 1_000_000, Ordering::SeqCst);
        }
    }

    impl Clock for FixedClock {
        fn now(&self) -> Timestamp {
            Timestamp::from_unix_nanos(self.0.load(Ordering::SeqCst))
        }
    }
}
