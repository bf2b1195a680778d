//! Property tests of time handling: RFC 3339 round trips and calendar quota windows.

use aforo_core::entitlement::{Period, QuotaWindow};
use aforo_core::time::{parse_rfc3339, Timestamp};
use proptest::prelude::*;

const Y1900: i64 = -2_208_988_800_000_000_000;
const Y2200: i64 = 7_258_118_400_000_000_000;

fn period() -> impl Strategy<Value = Period> {
    prop_oneof![
        Just(Period::Minute),
        Just(Period::Hour),
        Just(Period::Day),
        Just(Period::Week),
        Just(Period::Month),
        Just(Period::Year),
    ]
}

proptest! {
    #[test]
    fn rfc3339_round_trips(n in Y1900..Y2200) {
        let t = Timestamp::from_unix_nanos(n);
        prop_assert_eq!(parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
    }

    #[test]
    fn the_current_window_contains_now_and_tiles_time(
        anchor in Y1900 / 2..Y2200 / 2, now in Y1900 / 2..Y2200 / 2, p in period()
    ) {
        let w = QuotaWindow { period: p, anchor: Timestamp::from_unix_nanos(anchor) };
        let now = Timestamp::from_unix_nanos(now);
        let (start, end) = w.current(now);
        prop_assert!(start <= now && now < end, "{} not in [{}, {})", now, start, end);
        // The next window starts exactly where this one ends.
        prop_assert_eq!(w.current(end).0, end);
        // The instant before the start belongs to the previous window.
        prop_assert_eq!(w.current(start.plus_nanos(-1)).1, start);
        // Months are 28..=31 days; years 365..=366 days.
        let days = end.nanos_since(start) / 86_400_000_000_000;
        match p {
            Period::Month => prop_assert!((28..=31).contains(&days)),
            Period::Year => prop_assert!((365..=366).contains(&days)),
            _ => {}
        }
    }
}
