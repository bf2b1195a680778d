//! Time without chrono: UTC instants, RFC 3339 text and calendar arithmetic.
//!
//! The core never reads a clock; hosts pass `Timestamp`s in, so every rule is deterministic in tests.

mod buckets;
mod civil;
mod rfc3339;

pub use buckets::{parse_utc_offset, period_of, Granularity};
pub use civil::{add_months, civil_from_days, days_from_civil, days_in_month, CivilDateTime};
pub use rfc3339::{parse_rfc3339, TimeError};

use std::fmt;

/// Nanoseconds in one millisecond.
pub const NANOS_PER_MILLI: i64 = 1_000_000;
/// Nanoseconds in one second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;
/// Nanoseconds in one minute.
pub const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SEC;
/// Nanoseconds in one hour.
pub const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
/// Nanoseconds in one day.
pub const NANOS_PER_DAY: i64 = 24 * NANOS_PER_HOUR;

/// A UTC instant with nanosecond precision, so window boundaries are exact (1677..2262).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch, handy as a "never happened" marker.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// Builds an instant from nanoseconds since the Unix epoch (what proxy-wasm hosts report).
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// Builds an instant from milliseconds since the Unix epoch.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Timestamp(millis.saturating_mul(NANOS_PER_MILLI))
    }

    /// Builds an instant from whole seconds since the Unix epoch.
    pub const fn from_unix_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// Milliseconds since the Unix epoch (floored).
    pub const fn unix_millis(self) -> i64 {
        self.0.div_euclid(NANOS_PER_MILLI)
    }

    /// Whole seconds since the Unix epoch (floored).
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC)
    }

    /// This instant moved by `nanos` (negative moves back), saturating at the representable range.
    pub const fn plus_nanos(self, nanos: i64) -> Self {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// This instant moved forward by `millis` milliseconds.
    pub const fn plus_millis(self, millis: i64) -> Self {
        self.plus_nanos(millis.saturating_mul(NANOS_PER_MILLI))
    }

    /// Signed nanoseconds from `earlier` to `self` (positive when `self` is later).
    pub const fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Milliseconds from `earlier` to `self`, floored.
    pub const fn millis_since(self, earlier: Timestamp) -> i64 {
        self.nanos_since(earlier).div_euclid(NANOS_PER_MILLI)
    }

    /// The calendar fields of this instant in UTC.
    pub fn civil(self) -> CivilDateTime {
        CivilDateTime::from_timestamp(self)
    }

    /// RFC 3339 in UTC (`2026-03-15T12:00:00Z`), with fractional digits only when present.
    pub fn to_rfc3339(self) -> String {
        self.civil().to_rfc3339()
    }

    /// The same text appended to a byte buffer (an event's JSON, with no string of its own).
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        self.civil().write_rfc3339(out);
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_whole_seconds_and_fractions() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2026-03-15T12:00:00Z",
            "2024-02-29T23:59:59.999Z",
            "2026-11-23T08:07:06.000000001Z",
            "1999-12-31T23:59:59.5Z",
        ] {
            let ts = parse_rfc3339(text).unwrap();
            assert_eq!(ts.to_rfc3339(), text, "round trip of {text}");
        }
    }

    #[test]
    fn negative_instants_floor_to_the_earlier_second() {
        let ts = Timestamp::from_unix_nanos(-1);
        assert_eq!(ts.unix_secs(), -1);
        assert_eq!(ts.to_rfc3339(), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn differences_are_signed() {
        let a = Timestamp::from_unix_secs(10);
        let b = Timestamp::from_unix_secs(4);
        assert_eq!(a.millis_since(b), 6_000);
        assert_eq!(b.millis_since(a), -6_000);
    }
}
