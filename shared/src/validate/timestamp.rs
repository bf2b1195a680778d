//! The timestamp windows: more than 5 minutes ahead is refused, more than 90 days old is
//! refused, more than 24 hours old is accepted but flagged `late`. Each bound is inclusive
//! on the accepting side: exactly 5 minutes ahead is accepted, exactly 24 hours old is not late.

use super::{RejectCode, Rejection};
use crate::time::{Timestamp, NANOS_PER_DAY, NANOS_PER_HOUR, NANOS_PER_MINUTE};

/// Largest accepted clock skew into the future (5 minutes).
pub const MAX_FUTURE_SKEW: i64 = 5 * NANOS_PER_MINUTE;
/// Largest accepted age (90 days).
pub const MAX_AGE: i64 = 90 * NANOS_PER_DAY;
/// Age past which an accepted event is flagged late (24 hours).
pub const LATE_AFTER: i64 = 24 * NANOS_PER_HOUR;

/// A mark on an accepted event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampFlag {
    /// Older than 24 hours: its billing period may already be closed.
    Late,
}

impl TimestampFlag {
    /// The wire name (`late`).
    pub const fn as_str(self) -> &'static str {
        "late"
    }
}

/// Applies the windows to `ts` as seen at `now`.
pub fn check_timestamp(ts: Timestamp, now: Timestamp) -> Result<Option<TimestampFlag>, Rejection> {
    let ahead = ts.nanos_since(now);
    if ahead > MAX_FUTURE_SKEW {
        return Err(Rejection::new(
            RejectCode::TimestampInFuture,
            Some("timestamp"),
            format!(
                "is {} ahead of the receiver's clock; at most 5 minutes of skew is accepted",
                human(ahead)
            ),
        ));
    }
    let age = now.nanos_since(ts);
    if age > MAX_AGE {
        return Err(Rejection::new(
            RejectCode::TimestampTooOld,
            Some("timestamp"),
            format!(
                "is {} old; events older than 90 days are refused",
                human(age)
            ),
        ));
    }
    Ok((age > LATE_AFTER).then_some(TimestampFlag::Late))
}

fn human(nanos: i64) -> String {
    let secs = nanos / 1_000_000_000;
    if secs >= 86_400 {
        format!("{}d{}h", secs / 86_400, (secs % 86_400) / 3_600)
    } else if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}.{:03}s", secs, (nanos / 1_000_000) % 1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;

    const NOW: &str = "2026-03-15T12:00:00Z";

    fn at(offset_nanos: i64) -> Result<Option<TimestampFlag>, RejectCode> {
        let now = parse_rfc3339(NOW).unwrap();
        check_timestamp(now.plus_nanos(offset_nanos), now).map_err(|r| r.code)
    }

    #[test]
    fn five_minutes_ahead_is_the_last_accepted_instant() {
        assert_eq!(at(MAX_FUTURE_SKEW), Ok(None));
        assert_eq!(at(MAX_FUTURE_SKEW + 1), Err(RejectCode::TimestampInFuture));
        assert_eq!(
            at(MAX_FUTURE_SKEW + NANOS_PER_MINUTE),
            Err(RejectCode::TimestampInFuture)
        );
        assert_eq!(at(6 * NANOS_PER_MINUTE), Err(RejectCode::TimestampInFuture));
    }

    #[test]
    fn ninety_days_old_is_the_last_accepted_instant() {
        assert_eq!(at(-MAX_AGE), Ok(Some(TimestampFlag::Late)));
        assert_eq!(at(-MAX_AGE - 1), Err(RejectCode::TimestampTooOld));
    }

    #[test]
    fn late_starts_just_past_twenty_four_hours() {
        assert_eq!(at(-LATE_AFTER), Ok(None));
        assert_eq!(at(-LATE_AFTER - 1), Ok(Some(TimestampFlag::Late)));
        assert_eq!(at(0), Ok(None));
    }

    #[test]
    fn messages_say_by_how_much() {
        let now = parse_rfc3339(NOW).unwrap();
        let r = check_timestamp(now.plus_nanos(6 * NANOS_PER_MINUTE), now).unwrap_err();
        assert!(r.message.contains("6m0s"), "{}", r.message);
    }
}
