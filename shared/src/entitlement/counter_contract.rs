//! The counter contract every store shares (host shared data, the agent's memory and SQLite,
//! the Redis scripts in `plugins/agent/src/redis_state/*.lua`): how a counter is named, the
//! bytes its value holds, and which counters a usage event adds to.
//!
//! Value layout: window start (i64 LE nanos) · count (u64 LE) · the key itself. Storing the
//! key lets a reader notice Kong's CRC32-only key identity aliasing two keys.

use super::window::QuotaWindow;
use super::MAX_UNITS;
use crate::environment::Environment;
use crate::event::UsageEvent;
use crate::time::Timestamp;

/// The namespace of every counter key; stores that add their own prefix drop it.
pub const KEY_PREFIX: &str = "aforo:";

/// Bytes of a value before the key: the window start, then the count.
pub const VALUE_HEADER_BYTES: usize = 16;

/// What a counter counts, from its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterKind {
    /// A quota: `aforo:q:<env>:<customer>:<feature>`, windows up to a year.
    Quota,
    /// A rate-limit bucket: `aforo:r:<env>:…`, windows up to a day.
    Rate,
}

/// A counter's name, taken apart by the rules that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterKey<'a> {
    /// What it counts.
    pub kind: CounterKind,
    /// The key without `aforo:` (what a store with its own prefix appends).
    pub unprefixed: &'a str,
    /// After `aforo:q:` or `aforo:r:` (for quotas: `<env>:<customer>:<feature>`).
    pub rest: &'a str,
}

impl<'a> CounterKey<'a> {
    /// Reads a counter key; `None` for a key no rule here makes.
    pub fn parse(key: &'a str) -> Option<Self> {
        let unprefixed = key.strip_prefix(KEY_PREFIX)?;
        let (kind, rest) = if let Some(rest) = unprefixed.strip_prefix("q:") {
            (CounterKind::Quota, rest)
        } else if let Some(rest) = unprefixed.strip_prefix("r:") {
            (CounterKind::Rate, rest)
        } else {
            return None;
        };
        Some(CounterKey {
            kind,
            unprefixed,
            rest,
        })
    }
}

/// A counter's value: the window it counts in and the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterValue {
    /// Start of the window the count belongs to.
    pub window_start: Timestamp,
    /// Units counted in it.
    pub count: u64,
}

impl CounterValue {
    /// The stored bytes of this value under `key`.
    pub fn encode(self, key: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(VALUE_HEADER_BYTES + key.len());
        v.extend_from_slice(&self.window_start.unix_nanos().to_le_bytes());
        v.extend_from_slice(&self.count.to_le_bytes());
        v.extend_from_slice(key.as_bytes());
        v
    }

    /// The value stored under `key`; `None` when the bytes are another key's or too short.
    pub fn decode(key: &str, bytes: &[u8]) -> Option<Self> {
        if bytes.len() < VALUE_HEADER_BYTES || &bytes[VALUE_HEADER_BYTES..] != key.as_bytes() {
            return None;
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[..8]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[8..VALUE_HEADER_BYTES]);
        Some(CounterValue {
            window_start: Timestamp::from_unix_nanos(i64::from_le_bytes(a)),
            count: u64::from_le_bytes(b),
        })
    }
}

/// A quota counter an event adds to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterTarget {
    /// The counter key (`aforo:q:<env>:<customer>:<feature>`).
    pub key: String,
    /// Its current window.
    pub window_start: Timestamp,
    /// When that window resets.
    pub window_end: Timestamp,
    /// Units the event adds.
    pub units: u64,
    /// Whether its gateway admitted the request from a quota lease of this counter (the
    /// event's `leased` property names the feature): the lease counted the units when it was
    /// granted, so the claim takes them from the gateway's prepaid units.
    pub prepaid: bool,
}

/// The event property in which a gateway names the features whose quota units it took from a
/// lease at admission (a list of names; a reserved property name, never a route's).
pub const LEASED_PROPERTY: &str = "leased";

/// Whether `event` says its gateway took `feature`'s units from a lease.
pub fn leased_for(event: &UsageEvent, feature: &str) -> bool {
    event
        .properties
        .get(LEASED_PROPERTY)
        .and_then(|v| v.as_array())
        .is_some_and(|names| names.iter().any(|n| n.as_str() == Some(feature)))
}

/// The feature name of a customer's daily credits counter: a quota counter of the UTC day
/// that every unit of every metered event of the customer adds to (reserved: catalog feature
/// names may not start with `*`).
pub const DAILY_CREDITS: &str = "*daily_credits";

/// The quota counters `event` adds to, given the features of its customer that count its
/// metric (name and window): one per feature whose current window holds the event's time, with
/// the event's quantity rounded up to whole units. No quota exceeds `MAX_UNITS`, so a larger
/// event adds `MAX_UNITS`: it exhausts any of them, as a saturated count would. An event of
/// zero units adds to none.
pub fn counters_of<'a>(
    env: Environment,
    event: &'a UsageEvent,
    features: impl Iterator<Item = (&'a str, QuotaWindow)> + 'a,
    now: Timestamp,
) -> impl Iterator<Item = (CounterTarget, &'a str)> + 'a {
    let units = event.quantity.ceil_units().min(MAX_UNITS);
    features
        .filter(move |_| units > 0)
        .filter_map(move |(feature, window)| {
            let (start, end) = window.current(now);
            (event.timestamp >= start && event.timestamp < end).then(|| {
                (
                    CounterTarget {
                        key: super::quota_key(env, &event.customer_id, feature),
                        window_start: start,
                        window_end: end,
                        units,
                        prepaid: leased_for(event, feature),
                    },
                    feature,
                )
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_and_another_keys_bytes_do_not_decode() {
        let key = "aforo:q:sandbox:acme:search";
        let v = CounterValue {
            window_start: Timestamp::from_unix_nanos(1_700_000_000_123_456_789),
            count: 42,
        };
        let bytes = v.encode(key);
        assert_eq!(bytes.len(), VALUE_HEADER_BYTES + key.len());
        assert_eq!(&bytes[8..16], &42u64.to_le_bytes());
        assert_eq!(CounterValue::decode(key, &bytes), Some(v));
        assert_eq!(
            CounterValue::decode("aforo:q:sandbox:acme:other", &bytes),
            None
        );
        assert_eq!(CounterValue::decode(key, &bytes[..15]), None);
    }

    #[test]
    fn keys_are_taken_apart_by_the_rules_that_make_them() {
        let q = super::super::quota_key(Environment::Production, "acme", "search");
        let k = CounterKey::parse(&q).unwrap();
        assert_eq!(k.kind, CounterKind::Quota);
        assert_eq!(k.unprefixed, "q:production:acme:search");
        assert_eq!(k.rest, "production:acme:search");
        assert_eq!(
            CounterKey::parse("aforo:r:sandbox:k:key1").map(|k| k.kind),
            Some(CounterKind::Rate)
        );
        assert_eq!(CounterKey::parse("other:q:x"), None);
    }
}
