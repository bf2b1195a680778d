//! Fixed-window rate limits aligned to UTC boundaries (a minute starts at :00), with exact resets.

use crate::environment::Environment;
use crate::time::{Timestamp, NANOS_PER_DAY, NANOS_PER_HOUR, NANOS_PER_MINUTE, NANOS_PER_SEC};

/// Length of a rate-limit window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Per {
    /// Window length in nanoseconds.
    pub const fn nanos(self) -> i64 {
        match self {
            Per::Second => NANOS_PER_SEC,
            Per::Minute => NANOS_PER_MINUTE,
            Per::Hour => NANOS_PER_HOUR,
            Per::Day => NANOS_PER_DAY,
        }
    }

    /// Parses `second`, `minute`, `hour` or `day`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "second" => Some(Per::Second),
            "minute" => Some(Per::Minute),
            "hour" => Some(Per::Hour),
            "day" => Some(Per::Day),
            _ => None,
        }
    }
}

/// At most `limit` units per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Units allowed per window.
    pub limit: u64,
    /// Window length.
    pub per: Per,
}

impl RateLimit {
    /// The default ingest limit of an environment (sandbox 10,000/h, production 1,000,000/h).
    pub const fn ingest_default(env: Environment) -> Self {
        RateLimit {
            limit: env.default_events_per_hour(),
            per: Per::Hour,
        }
    }

    /// Start of the window containing `now`.
    pub fn window_start(&self, now: Timestamp) -> Timestamp {
        let len = self.per.nanos();
        Timestamp::from_unix_nanos(now.unix_nanos().div_euclid(len) * len)
    }

    /// First instant of the next window.
    pub fn reset_at(&self, now: Timestamp) -> Timestamp {
        self.window_start(now).plus_nanos(self.per.nanos())
    }
}

/// Whole seconds until `reset`, rounded up, at least 1: what `Retry-After` says.
pub fn retry_after_secs(now: Timestamp, reset: Timestamp) -> u64 {
    let nanos = reset.nanos_since(now).max(0) as u64;
    nanos.div_ceil(NANOS_PER_SEC as u64).max(1)
}

/// An in-memory counter for one key's current window (ingests keep one per API key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounter {
    window_start: Timestamp,
    used: u64,
}

/// A refusal: how long until the window resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhausted {
    /// When capacity returns.
    pub reset_at: Timestamp,
    /// `Retry-After` seconds (>= 1).
    pub retry_after_secs: u64,
}

impl WindowCounter {
    /// Takes `n` units if they all fit in the current window; all or nothing.
    pub fn try_take(
        &mut self,
        limit: &RateLimit,
        now: Timestamp,
        n: u64,
    ) -> Result<u64, Exhausted> {
        let start = limit.window_start(now);
        if start != self.window_start {
            self.window_start = start;
            self.used = 0;
        }
        if self.used.saturating_add(n) > limit.limit {
            let reset_at = limit.reset_at(now);
            return Err(Exhausted {
                reset_at,
                retry_after_secs: retry_after_secs(now, reset_at),
            });
        }
        self.used += n;
        Ok(limit.limit - self.used)
    }

    /// Units used in the window containing `now`.
    pub fn used(&self, limit: &RateLimit, now: Timestamp) -> u64 {
        if limit.window_start(now) == self.window_start {
            self.used
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;

    #[test]
    fn windows_align_to_utc_and_reset_exactly() {
        let l = RateLimit {
            limit: 3,
            per: Per::Minute,
        };
        let now = parse_rfc3339("2026-03-15T12:00:59.250Z").unwrap();
        assert_eq!(
            l.window_start(now),
            parse_rfc3339("2026-03-15T12:00:00Z").unwrap()
        );
        assert_eq!(
            l.reset_at(now),
            parse_rfc3339("2026-03-15T12:01:00Z").unwrap()
        );
        assert_eq!(retry_after_secs(now, l.reset_at(now)), 1);
        let early = parse_rfc3339("2026-03-15T12:00:00.001Z").unwrap();
        assert_eq!(retry_after_secs(early, l.reset_at(early)), 60);
    }

    #[test]
    fn counter_refuses_past_the_limit_until_the_next_window() {
        let l = RateLimit {
            limit: 3,
            per: Per::Second,
        };
        let t = parse_rfc3339("2026-03-15T12:00:00Z").unwrap();
        let mut c = WindowCounter::default();
        assert_eq!(c.try_take(&l, t, 2), Ok(1));
        assert_eq!(c.try_take(&l, t, 1), Ok(0));
        let e = c.try_take(&l, t.plus_millis(400), 1).unwrap_err();
        assert_eq!(e.retry_after_secs, 1);
        assert_eq!(c.used(&l, t), 3);
        // All or nothing: a batch that does not fit takes nothing.
        assert!(c.try_take(&l, t, 5).is_err());
        assert_eq!(c.try_take(&l, t.plus_millis(1000), 3), Ok(0));
    }

    #[test]
    fn environment_defaults() {
        assert_eq!(
            RateLimit::ingest_default(Environment::Sandbox).limit,
            10_000
        );
        assert_eq!(
            RateLimit::ingest_default(Environment::Production).limit,
            1_000_000
        );
    }
}
