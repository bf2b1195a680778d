//! Counters in Redis with the component's compare-and-swap contract: each counter is a hash
//! (`v` the value, `c` its token), written by one Lua script that checks the token, so two
//! agents never lose each other's increments. When Redis is unreachable the agent decides on a
//! local copy, started from the last values it read.

use super::leases::RedisLeases;
use super::RedisLink;
use crate::clock::SharedClock;
use crate::counters::{LocalCounters, Served, SyncCounters};
use aforo_core::entitlement::{stored_window_start, CounterKey, CounterKind, Leased, KEY_PREFIX};
use aforo_core::host::SharedSetError;
use aforo_core::time::NANOS_PER_DAY;
use aforo_core::Timestamp;
use std::sync::Arc;

/// Counters shared through Redis, with a local fallback.
pub struct RedisCounters {
    link: Arc<RedisLink>,
    local: LocalCounters,
    clock: SharedClock,
    leases: Option<RedisLeases>,
}

/// The Redis key of a core counter key (`aforo:q:…` → `<prefix>q:…`; in a cluster a quota's
/// counter carries its customer's hash tag, `<prefix>{<env>:<customer>}q:…`, so a claim's
/// counters and event ids share a slot).
pub fn redis_key(link: &RedisLink, key: &str) -> String {
    match CounterKey::parse(key) {
        Some(k) if k.kind == CounterKind::Quota => link.key_in(customer_tag(k.rest), k.unprefixed),
        Some(k) => link.key(k.unprefixed),
        None => link.key(key.strip_prefix(KEY_PREFIX).unwrap_or(key)),
    }
}

/// The hash tag of a quota counter's rest (`<env>:<customer>:<feature>` → `<env>:<customer>`).
/// Feature names hold no `:` in a cluster (the agent refuses such a catalog there), so this is
/// the customer's tag for every feature, as `claims::customer_tag` makes it for event ids.
pub fn customer_tag(rest: &str) -> &str {
    rest.rsplit_once(':').map_or(rest, |(tag, _)| tag)
}

/// When a counter may be dropped: its window's start plus the longest window of its kind
/// (quota windows run up to a year, rate-limit windows up to a day) and a day of slack.
/// Counts added by claims expire at their window's real reset (see `claims.rs`).
fn expiry_ms(key: &str, value: &[u8], now: i64) -> i64 {
    let start = stored_window_start(key, value)
        .map(|t| t.unix_nanos())
        .unwrap_or(0);
    let rate = CounterKey::parse(key).is_some_and(|k| k.kind == CounterKind::Rate);
    let longest = if rate {
        NANOS_PER_DAY
    } else {
        366 * NANOS_PER_DAY
    };
    start
        .max(now - longest)
        .saturating_add(longest + NANOS_PER_DAY)
        / 1_000_000
}

impl RedisCounters {
    /// Counters behind `link`; `clock` dates their expiry; reservations are taken from
    /// `leases` when given.
    pub fn new(
        link: Arc<RedisLink>,
        clock: SharedClock,
        leases: Option<RedisLeases>,
    ) -> RedisCounters {
        RedisCounters {
            link,
            local: LocalCounters::default(),
            clock,
            leases,
        }
    }

    /// The quota leases, when reservations are taken from them.
    pub fn leases(&self) -> Option<&RedisLeases> {
        self.leases.as_ref()
    }

    /// The local copy (usage recorded while Redis is unreachable goes here too).
    pub fn local(&self) -> &LocalCounters {
        &self.local
    }
}

/// Tokens handed out for values read from the local copy carry this bit; Redis's never do
/// (its scripts keep them below 2^31), so a write goes back to where its read came from.
const LOCAL: u32 = 1 << 31;

impl SyncCounters for RedisCounters {
    fn take_leased(
        &self,
        key: &str,
        window: (Timestamp, Timestamp),
        quota: u64,
        cost: u64,
        now: Timestamp,
    ) -> Option<Leased> {
        self.leases.as_ref()?.take(key, window, quota, cost, now)
    }

    fn give_leased(&self, key: &str, window_start: Timestamp, units: u64) {
        if let Some(l) = &self.leases {
            l.refund(key, window_start, units);
        }
    }

    fn read_served(&self, key: &str) -> (Option<(Vec<u8>, u32)>, Served) {
        let rkey = redis_key(&self.link, key);
        match self.link.with(|c, _| {
            redis::cmd("HMGET")
                .arg(&rkey)
                .arg("v")
                .arg("c")
                .query::<(Option<Vec<u8>>, Option<u32>)>(c)
        }) {
            Ok((Some(v), Some(cas))) => {
                self.local.seed(key, &v);
                (Some((v, cas & !LOCAL)), Served::Store)
            }
            Ok(_) => (None, Served::Store),
            Err(_) => (
                self.local
                    .read(key)
                    .map(|(v, cas)| (v, (cas & !LOCAL) | LOCAL)),
                Served::Fallback,
            ),
        }
    }

    fn write_served(
        &self,
        key: &str,
        value: &[u8],
        cas: u32,
    ) -> (Result<(), SharedSetError>, Served) {
        // A token from the local copy goes back to it; a key read as absent (0) goes to
        // whichever is up.
        if cas & LOCAL != 0 || (cas == 0 && self.link.is_down()) {
            return (
                self.local.write_masked(key, value, cas & !LOCAL, !LOCAL),
                Served::Fallback,
            );
        }
        let now = self.clock.now().unix_nanos();
        let rkey = redis_key(&self.link, key);
        match self.link.with(|c, s| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&s.cas)
                .arg(1)
                .arg(&rkey)
                .arg(value)
                .arg(cas)
                .arg(expiry_ms(key, value, now));
            c.script::<i64>(super::CAS_SCRIPT, &cmd)
        }) {
            Ok(1) => {
                // The local copy follows, so a fallback starts from this write.
                self.local.seed(key, value);
                (Ok(()), Served::Store)
            }
            // Someone wrote first, or Redis went away mid-write: the caller reads again (from
            // Redis, or from the local copy) and retries.
            Ok(_) | Err(super::StateError::Down(_)) => {
                (Err(SharedSetError::CasMismatch), Served::Store)
            }
            Err(e) => (
                Err(SharedSetError::Unavailable(e.to_string())),
                Served::Store,
            ),
        }
    }
}
