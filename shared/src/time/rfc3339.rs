//! RFC 3339 parsing, strict enough for billing: a date, a time, and an explicit offset.

use super::{days_in_month, CivilDateTime, Timestamp, NANOS_PER_MINUTE};
use std::fmt;

/// Why a timestamp string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeError {
    /// What was wrong, in words a user can act on.
    pub reason: &'static str,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (expected RFC 3339 like 2026-03-15T12:00:00Z)",
            self.reason
        )
    }
}

impl std::error::Error for TimeError {}

fn err(reason: &'static str) -> TimeError {
    TimeError { reason }
}

fn digits(b: &[u8], at: usize, n: usize) -> Result<u32, TimeError> {
    let slice = b.get(at..at + n).ok_or(err("text ends too early"))?;
    let mut v: u32 = 0;
    for &c in slice {
        if !c.is_ascii_digit() {
            return Err(err("a digit was expected"));
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Ok(v)
}

fn expect(b: &[u8], at: usize, chars: &[u8]) -> Result<(), TimeError> {
    match b.get(at) {
        Some(c) if chars.contains(c) => Ok(()),
        _ => Err(err("a separator is missing or wrong")),
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into a UTC instant.
///
/// Offsets are accepted and normalised to UTC; leap seconds (`:60`) and dates that do not exist
/// (`2026-02-30`) are refused, because a silently shifted timestamp would bill the wrong window.
pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimeError> {
    let b = text.as_bytes();
    if b.len() > 64 {
        return Err(err("timestamp text is too long"));
    }
    let year = digits(b, 0, 4)? as i64;
    expect(b, 4, b"-")?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b"-")?;
    let day = digits(b, 8, 2)?;
    expect(b, 10, b"Tt ")?;
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b":")?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b":")?;
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month) {
        return Err(err("month must be 01..12"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(err("day does not exist in that month"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(err("time of day is out of range"));
    }
    let mut at = 19;
    let mut nanos: u32 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while let Some(c) = b.get(at) {
            if !c.is_ascii_digit() {
                break;
            }
            if at - start < 9 {
                nanos = nanos * 10 + (c - b'0') as u32;
            }
            at += 1;
        }
        let n = at - start;
        if n == 0 {
            return Err(err("a fraction needs at least one digit"));
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset_minutes: i64 = match b.get(at) {
        Some(b'Z') | Some(b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, at + 1, 2)? as i64;
            expect(b, at + 3, b":")?;
            let om = digits(b, at + 4, 2)? as i64;
            if oh > 23 || om > 59 {
                return Err(err("offset is out of range"));
            }
            at += 6;
            let m = oh * 60 + om;
            if sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return Err(err("a time zone (Z or ±HH:MM) is required")),
    };
    if at != b.len() {
        return Err(err("unexpected text after the time zone"));
    }
    let local = CivilDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    }
    .to_timestamp();
    Ok(local.plus_nanos(-offset_minutes * NANOS_PER_MINUTE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_normalise_to_utc() {
        let a = parse_rfc3339("2026-03-15T14:30:00+02:30").unwrap();
        let b = parse_rfc3339("2026-03-15T12:00:00Z").unwrap();
        assert_eq!(a, b);
        let c = parse_rfc3339("2026-03-15T07:00:00-05:00").unwrap();
        assert_eq!(c, b);
    }

    #[test]
    fn refuses_what_is_not_a_real_instant() {
        for bad in [
            "",
            "2026-03-15",
            "2026-03-15T12:00:00",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-03-15T24:00:00Z",
            "2026-03-15T23:59:60Z",
            "2026-03-15T12:00:00.Z",
            "2026-03-15T12:00:00Zjunk",
            "26-03-15T12:00:00Z",
            "2026/03/15T12:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn long_fractions_are_truncated_to_nanoseconds() {
        let ts = parse_rfc3339("2026-03-15T12:00:00.1234567891234Z").unwrap();
        assert_eq!(ts.unix_nanos() % 1_000_000_000, 123_456_789);
    }

    #[test]
    fn leap_day_exists_only_in_leap_years() {
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
        assert!(parse_rfc3339("2026-02-29T00:00:00Z").is_err());
    }
}
