//! Claiming events in Redis: one Lua script per batch records each event's id (the shared dedup
//! window) and adds the units of the new ones to the quota counters, in one atomic step, so an
//! event sent through two agents, or replayed after a crash or an outage, is counted once.
//!
//! The id is stored with a token of the stored copy (the agent's node id and the time it stored
//! the event): an agent that crashed after the script ran but before it noted the result finds
//! its own claim when it replays (also under a new node id), and does not count again; another
//! agent's copy, even one with the same node id, is a duplicate.

use super::{RedisLink, StateError};
use crate::redis_state::counters::redis_key;
use aforo_core::entitlement::{CounterKey, CounterTarget};
use aforo_core::{Environment, Timestamp};
use std::collections::HashMap;

/// Claims a batch of events in one atomic step.
/// KEYS: the n dedup keys, then per slot (a counter and a source) the counter hash and the
/// per-source hash. ARGV: dedup time (ms), n, m (slots); per slot four values: the core counter
/// key, the window start (8 bytes, little-endian ns), the expiry (ms since the epoch: the
/// window's reset plus a day) and the source ('' for none); then per event its claim token
/// (`<node id>@<received ns>`), the number k of its counters and k pairs (slot, units).
/// Counts saturate at 2^53 (the largest quota a snapshot may hold), exact in Lua's doubles.
/// Returns per event: 1 counted now, 2 claimed before by this stored copy (same received
/// time: a replay after a crash, even under a new node id), 0 claimed by another copy.
pub const CLAIM_SCRIPT: &str = include_str!("claim.lua");

/// One event to claim.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// Its environment (dedup namespaces never mix).
    pub env: Environment,
    /// Its id.
    pub id: String,
    /// The gateway node that reported it, for `used_by_source`.
    pub source: Option<String>,
    /// When this agent stored it (ns): with the node id, the claim's token.
    pub received_ns: i64,
    /// The counters it adds to.
    pub counters: Vec<CounterTarget>,
}

/// What a claim found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// First sighting: recorded and counted now.
    Counted = 0,
    /// Claimed earlier by this node (a replay after a crash): counted then.
    AlreadyOurs = 1,
    /// Claimed by another agent: a duplicate, this copy is dropped.
    Elsewhere = 2,
}

/// The per-source usage hash of a quota counter in a window.
pub fn source_key(link: &RedisLink, counter_key: &str, window_start: Timestamp) -> String {
    let rest = CounterKey::parse(counter_key).map_or(counter_key, |k| k.rest);
    link.key(&format!(
        "s:{rest}:{}",
        window_start.unix_nanos() / 1_000_000
    ))
}

/// The dedup key of an event id.
fn dedup_key(link: &RedisLink, env: Environment, id: &str) -> String {
    link.key(&format!("d:{}:{id}", env.as_str()))
}

/// Claims events of one environment in one round trip and one atomic script: counters
/// shared by several events are read and written once.
pub fn claim(
    link: &RedisLink,
    requests: &[ClaimRequest],
    dedup_ms: [u64; 2],
) -> Result<Vec<Claim>, StateError> {
    let Some(first) = requests.first() else {
        return Ok(Vec::new());
    };
    let env = first.env;
    // Slots: each distinct (counter, source), in first-seen order.
    let mut slots: Vec<(&CounterTarget, &str)> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut per_event: Vec<Vec<(usize, u64)>> = Vec::with_capacity(requests.len());
    for r in requests {
        let source = r.source.as_deref().unwrap_or("");
        let mut mine = Vec::with_capacity(r.counters.len());
        for t in &r.counters {
            let next = slots.len();
            let s = *index.entry((t.key.as_str(), source)).or_insert(next);
            if s == next {
                slots.push((t, source));
            }
            mine.push((s + 1, t.units));
        }
        per_event.push(mine);
    }
    let answers = link.with(|c, s| {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&s.claim).arg(requests.len() + 2 * slots.len());
        for r in requests {
            cmd.arg(dedup_key(link, env, &r.id));
        }
        for (t, _) in &slots {
            cmd.arg(redis_key(link, &t.key))
                .arg(source_key(link, &t.key, t.window_start));
        }
        cmd.arg(dedup_ms[env.index()])
            .arg(requests.len())
            .arg(slots.len());
        for (t, source) in &slots {
            let expiry = t.window_end.unix_nanos() / 1_000_000 + 86_400_000;
            cmd.arg(&t.key)
                .arg(&t.window_start.unix_nanos().to_le_bytes()[..])
                .arg(expiry)
                .arg(*source);
        }
        for (r, mine) in requests.iter().zip(&per_event) {
            cmd.arg(format!("{}@{}", link.node_id(), r.received_ns))
                .arg(mine.len());
            for (slot, units) in mine {
                cmd.arg(*slot).arg(*units);
            }
        }
        cmd.query::<Vec<i64>>(c)
    })?;
    if answers.len() != requests.len() {
        return Err(StateError::Failed(format!(
            "the claim script answered {} results for {} events",
            answers.len(),
            requests.len()
        )));
    }
    answers
        .into_iter()
        .map(|a| match a {
            1 => Ok(Claim::Counted),
            2 => Ok(Claim::AlreadyOurs),
            0 => Ok(Claim::Elsewhere),
            other => Err(StateError::Failed(format!(
                "the claim script answered {other}, not 0, 1 or 2"
            ))),
        })
        .collect()
}
