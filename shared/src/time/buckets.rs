//! Reporting periods: the day or month a time falls in, in UTC or at a fixed offset from it,
//! so usage can be summed per day or per month as a customer's calendar sees it.

use super::civil::{add_months, days_from_civil};
use super::Timestamp;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SEC;

/// How usage is summed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// Per calendar day.
    Daily,
    /// Per calendar month.
    Monthly,
}

impl Granularity {
    /// `daily` or `monthly`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "daily" => Some(Granularity::Daily),
            "monthly" => Some(Granularity::Monthly),
            _ => None,
        }
    }
}

/// A fixed offset from UTC, `Z`/`UTC` or `±HH:MM` (at most ±18:00), in seconds.
pub fn parse_utc_offset(s: &str) -> Option<i64> {
    if s == "Z" || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return None;
    }
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 18 || m > 59 || (h == 18 && m > 0) {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// The period `t` falls in, as `[start, end)`, for a calendar `offset_secs` east of UTC.
pub fn period_of(t: Timestamp, g: Granularity, offset_secs: i64) -> (Timestamp, Timestamp) {
    let shift = offset_secs.saturating_mul(NANOS_PER_SEC);
    let local = t.unix_nanos().saturating_add(shift);
    let day_start = local.div_euclid(NANOS_PER_DAY) * NANOS_PER_DAY;
    let (start, end) = match g {
        Granularity::Daily => (day_start, day_start.saturating_add(NANOS_PER_DAY)),
        Granularity::Monthly => {
            let (y, m, _) = super::civil::civil_from_days(day_start.div_euclid(NANOS_PER_DAY));
            let first =
                Timestamp::from_unix_nanos(days_from_civil(y, m, 1).saturating_mul(NANOS_PER_DAY));
            (first.unix_nanos(), add_months(first, 1).unix_nanos())
        }
    };
    (
        Timestamp::from_unix_nanos(start.saturating_sub(shift)),
        Timestamp::from_unix_nanos(end.saturating_sub(shift)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;

    fn t(s: &str) -> Timestamp {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn days_and_months_in_utc_and_at_an_offset() {
        let at = t("2026-02-28T23:30:00Z");
        assert_eq!(
            period_of(at, Granularity::Daily, 0),
            (t("2026-02-28T00:00:00Z"), t("2026-03-01T00:00:00Z"))
        );
        // At +01:00 it is already March 1st.
        assert_eq!(
            period_of(at, Granularity::Daily, 3600),
            (t("2026-02-28T23:00:00Z"), t("2026-03-01T23:00:00Z"))
        );
        assert_eq!(
            period_of(at, Granularity::Monthly, 0),
            (t("2026-02-01T00:00:00Z"), t("2026-03-01T00:00:00Z"))
        );
        assert_eq!(
            period_of(at, Granularity::Monthly, 3600),
            (t("2026-02-28T23:00:00Z"), t("2026-03-31T23:00:00Z"))
        );
        assert_eq!(
            period_of(t("2026-03-01T00:30:00Z"), Granularity::Monthly, -3600),
            (t("2026-02-01T01:00:00Z"), t("2026-03-01T01:00:00Z"))
        );
    }

    #[test]
    fn offsets_are_utc_or_plus_minus_hours_and_minutes() {
        assert_eq!(parse_utc_offset("UTC"), Some(0));
        assert_eq!(parse_utc_offset("+05:30"), Some(19_800));
        assert_eq!(parse_utc_offset("-08:00"), Some(-28_800));
        for bad in [
            "Europe/Paris",
            "+5",
            "+05:60",
            "+19:00",
            "05:00",
            "",
            "+-5:00",
            "+-0:-5",
        ] {
            assert_eq!(parse_utc_offset(bad), None, "{bad}");
        }
        assert_eq!(Granularity::parse("weekly"), None);
    }
}
