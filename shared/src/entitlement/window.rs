//! Quota windows on real calendar boundaries, anchored at the billing start:
//! an anchor of Jan 31 renews Feb 28 (or 29), Mar 31, Apr 30 — a month is not 30 days.

use crate::time::{
    add_months, days_from_civil, Timestamp, NANOS_PER_DAY, NANOS_PER_HOUR, NANOS_PER_MINUTE,
};

/// How often a quota renews.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// Every minute.
    Minute,
    /// Every hour.
    Hour,
    /// Every day.
    Day,
    /// Every 7 days.
    Week,
    /// Every calendar month (day clamped to the month's end).
    Month,
    /// Every calendar year.
    Year,
}

impl Period {
    /// Parses the snapshot's `window` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "minute" => Some(Period::Minute),
            "hour" => Some(Period::Hour),
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            "year" => Some(Period::Year),
            _ => None,
        }
    }

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    fn fixed_nanos(self) -> Option<i64> {
        match self {
            Period::Minute => Some(NANOS_PER_MINUTE),
            Period::Hour => Some(NANOS_PER_HOUR),
            Period::Day => Some(NANOS_PER_DAY),
            Period::Week => Some(7 * NANOS_PER_DAY),
            Period::Month | Period::Year => None,
        }
    }

    fn months(self) -> i64 {
        match self {
            Period::Year => 12,
            _ => 1,
        }
    }
}

/// A recurring window: boundary n is `anchor + n periods`, each computed from the anchor
/// (never by repeated addition, which would drift Jan 31 → Feb 28 → Mar 28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaWindow {
    /// Renewal period.
    pub period: Period,
    /// Any boundary of the recurrence (the billing anchor); defaults to the Unix epoch,
    /// which makes months start on the 1st at 00:00 UTC.
    pub anchor: Timestamp,
}

impl QuotaWindow {
    /// A window aligned to calendar boundaries in UTC (months start on the 1st).
    pub const fn calendar(period: Period) -> Self {
        QuotaWindow {
            period,
            anchor: Timestamp::EPOCH,
        }
    }

    /// Boundary number `n` (may be negative).
    pub fn boundary(&self, n: i64) -> Timestamp {
        match self.period.fixed_nanos() {
            Some(len) => self.anchor.plus_nanos(n.saturating_mul(len)),
            None => add_months(self.anchor, n * self.period.months()),
        }
    }

    /// `[start, end)` of the window containing `now`.
    pub fn current(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        if self.anchor == Timestamp::EPOCH && self.period == Period::Month {
            // Calendar months in UTC, the common case, straight from the date.
            let c = now.civil();
            let start = days_from_civil(c.year, c.month, 1);
            let (ny, nm) = if c.month == 12 {
                (c.year + 1, 1)
            } else {
                (c.year, c.month + 1)
            };
            let end = days_from_civil(ny, nm, 1);
            return (
                Timestamp::from_unix_nanos(start * NANOS_PER_DAY),
                Timestamp::from_unix_nanos(end * NANOS_PER_DAY),
            );
        }
        let n = match self.period.fixed_nanos() {
            Some(len) => now.nanos_since(self.anchor).div_euclid(len),
            None => {
                let a = self.anchor.civil();
                let c = now.civil();
                let months = (c.year - a.year) * 12 + (c.month as i64 - a.month as i64);
                let mut n = months.div_euclid(self.period.months());
                // The estimate is off by at most one in either direction.
                while self.boundary(n) > now {
                    n -= 1;
                }
                while self.boundary(n + 1) <= now {
                    n += 1;
                }
                n
            }
        };
        (self.boundary(n), self.boundary(n + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;

    fn ts(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }

    fn window(period: Period, anchor: &str) -> QuotaWindow {
        QuotaWindow {
            period,
            anchor: ts(anchor),
        }
    }

    #[test]
    fn calendar_months_start_on_the_first() {
        let w = QuotaWindow::calendar(Period::Month);
        let (s, e) = w.current(ts("2026-02-14T08:00:00Z"));
        assert_eq!(
            (s, e),
            (ts("2026-02-01T00:00:00Z"), ts("2026-03-01T00:00:00Z"))
        );
        // The last nanosecond of February is still February; midnight is March.
        let (s, _) = w.current(ts("2026-02-28T23:59:59.999999999Z"));
        assert_eq!(s, ts("2026-02-01T00:00:00Z"));
        let (s, e) = w.current(ts("2026-03-01T00:00:00Z"));
        assert_eq!(
            (s, e),
            (ts("2026-03-01T00:00:00Z"), ts("2026-04-01T00:00:00Z"))
        );
    }

    #[test]
    fn a_jan_31_anchor_renews_at_each_month_end() {
        let w = window(Period::Month, "2026-01-31T00:00:00Z");
        assert_eq!(
            w.current(ts("2026-02-10T00:00:00Z")),
            (ts("2026-01-31T00:00:00Z"), ts("2026-02-28T00:00:00Z"))
        );
        assert_eq!(
            w.current(ts("2026-02-28T00:00:00Z")),
            (ts("2026-02-28T00:00:00Z"), ts("2026-03-31T00:00:00Z"))
        );
        assert_eq!(
            w.current(ts("2026-04-15T00:00:00Z")),
            (ts("2026-03-31T00:00:00Z"), ts("2026-04-30T00:00:00Z"))
        );
        // Leap year: Feb 29.
        let w = window(Period::Month, "2024-01-31T00:00:00Z");
        assert_eq!(
            w.current(ts("2024-02-29T12:00:00Z")).0,
            ts("2024-02-29T00:00:00Z")
        );
        // Before the anchor, windows extend backwards.
        assert_eq!(
            w.current(ts("2024-01-15T00:00:00Z")),
            (ts("2023-12-31T00:00:00Z"), ts("2024-01-31T00:00:00Z"))
        );
    }

    #[test]
    fn years_and_fixed_periods() {
        let w = window(Period::Year, "2024-02-29T00:00:00Z");
        assert_eq!(
            w.current(ts("2025-03-01T00:00:00Z")),
            (ts("2025-02-28T00:00:00Z"), ts("2026-02-28T00:00:00Z"))
        );
        let w = window(Period::Day, "2026-03-15T06:00:00Z");
        assert_eq!(
            w.current(ts("2026-03-20T05:59:59Z")),
            (ts("2026-03-19T06:00:00Z"), ts("2026-03-20T06:00:00Z"))
        );
        let w = QuotaWindow::calendar(Period::Hour);
        assert_eq!(
            w.current(ts("2026-03-15T06:30:00Z")).1,
            ts("2026-03-15T07:00:00Z")
        );
    }
}
