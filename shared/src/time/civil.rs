//! Proleptic Gregorian calendar arithmetic (Howard Hinnant's algorithms), UTC only.

use super::{Timestamp, NANOS_PER_DAY, NANOS_PER_HOUR, NANOS_PER_MINUTE, NANOS_PER_SEC};

/// Days since 1970-01-01 for a calendar date; months are 1..=12.
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar date `(year, month, day)` of a day count since 1970-01-01.
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Whether `year` has a February 29th.
pub const fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days in a month (1..=12) of a year; 0 for an invalid month.
pub const fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => {
            if is_leap_year(year) {
                29
            } else {
                28
            }
        }
        _ => 0,
    }
}

/// Calendar fields of a UTC instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilDateTime {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of month, 1..=31.
    pub day: u32,
    /// Hour, 0..=23.
    pub hour: u32,
    /// Minute, 0..=59.
    pub minute: u32,
    /// Second, 0..=59.
    pub second: u32,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl CivilDateTime {
    /// Splits an instant into calendar fields.
    pub fn from_timestamp(ts: Timestamp) -> Self {
        let n = ts.unix_nanos();
        let days = n.div_euclid(NANOS_PER_DAY);
        let in_day = n.rem_euclid(NANOS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        CivilDateTime {
            year,
            month,
            day,
            hour: (in_day / NANOS_PER_HOUR) as u32,
            minute: ((in_day % NANOS_PER_HOUR) / NANOS_PER_MINUTE) as u32,
            second: ((in_day % NANOS_PER_MINUTE) / NANOS_PER_SEC) as u32,
            nanos: (in_day % NANOS_PER_SEC) as u32,
        }
    }

    /// Joins calendar fields back into an instant (fields must already be valid).
    pub fn to_timestamp(self) -> Timestamp {
        let days = days_from_civil(self.year, self.month, self.day);
        let nanos = days
            .saturating_mul(NANOS_PER_DAY)
            .saturating_add(self.hour as i64 * NANOS_PER_HOUR)
            .saturating_add(self.minute as i64 * NANOS_PER_MINUTE)
            .saturating_add(self.second as i64 * NANOS_PER_SEC)
            .saturating_add(self.nanos as i64);
        Timestamp::from_unix_nanos(nanos)
    }

    /// RFC 3339 text in UTC; fractions use 3, 6 or 9 digits as needed.
    pub fn to_rfc3339(self) -> String {
        let mut out = Vec::with_capacity(30);
        self.write_rfc3339(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the RFC 3339 text to `out` (byte by byte: an event's JSON is written this way,
    /// once per metered request).
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 40];
        let n = self.rfc3339_bytes(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }

    fn rfc3339_bytes(self, buf: &mut [u8; 40]) -> usize {
        /// The last `n` decimal digits of `v`, written from the right: each digit costs a
        /// division by the constant 10 (a multiply), not by a power of ten in a variable.
        fn put(buf: &mut [u8; 40], at: &mut usize, v: u32, n: u32) {
            let mut v = v;
            for slot in buf[*at..*at + n as usize].iter_mut().rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
            *at += n as usize;
        }
        let mut at = 0;
        let year = self.year.clamp(0, 9999) as u32;
        put(buf, &mut at, year, 4);
        buf[at] = b'-';
        at += 1;
        put(buf, &mut at, self.month, 2);
        buf[at] = b'-';
        at += 1;
        put(buf, &mut at, self.day, 2);
        buf[at] = b'T';
        at += 1;
        put(buf, &mut at, self.hour, 2);
        buf[at] = b':';
        at += 1;
        put(buf, &mut at, self.minute, 2);
        buf[at] = b':';
        at += 1;
        put(buf, &mut at, self.second, 2);
        if self.nanos != 0 {
            let (mut v, mut n) = (self.nanos, 9);
            while v % 10 == 0 {
                v /= 10;
                n -= 1;
            }
            buf[at] = b'.';
            at += 1;
            put(buf, &mut at, v, n);
        }
        buf[at] = b'Z';
        at + 1
    }
}

/// `ts` moved by `months` calendar months, clamping the day to the target month's end
/// (Jan 31 + 1 month = Feb 28 or 29), keeping the time of day.
pub fn add_months(ts: Timestamp, months: i64) -> Timestamp {
    let c = ts.civil();
    let total = c.year * 12 + (c.month as i64 - 1) + months;
    let year = total.div_euclid(12);
    let month = (total.rem_euclid(12) + 1) as u32;
    let day = c.day.min(days_in_month(year, month));
    CivilDateTime {
        year,
        month,
        day,
        ..c
    }
    .to_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;

    fn ts(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn civil_round_trip_over_four_centuries() {
        let start = days_from_civil(1900, 1, 1);
        let end = days_from_civil(2300, 12, 31);
        let mut day = start;
        while day <= end {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            assert!(d >= 1 && d <= days_in_month(y, m));
            day += 1;
        }
    }

    #[test]
    fn month_arithmetic_clamps_to_month_end() {
        assert_eq!(
            add_months(ts("2026-01-31T10:00:00Z"), 1),
            ts("2026-02-28T10:00:00Z")
        );
        assert_eq!(
            add_months(ts("2024-01-31T10:00:00Z"), 1),
            ts("2024-02-29T10:00:00Z")
        );
        assert_eq!(
            add_months(ts("2026-01-31T00:00:00Z"), 3),
            ts("2026-04-30T00:00:00Z")
        );
        assert_eq!(
            add_months(ts("2026-12-15T00:00:00Z"), 1),
            ts("2027-01-15T00:00:00Z")
        );
        assert_eq!(
            add_months(ts("2026-03-31T00:00:00Z"), -1),
            ts("2026-02-28T00:00:00Z")
        );
    }

    #[test]
    fn leap_years_follow_the_gregorian_rule() {
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(is_leap_year(2024));
        assert!(!is_leap_year(2026));
    }
}
