//! Claiming events in Redis: one Lua script per batch records each event's id (the shared dedup
//! window) and adds the units of the new ones to the quota counters, in one atomic step, so an
//! event sent through two agents, or replayed after a crash or an outage, is counted once.
//!
//! The id is stored with a token of the stored copy (the agent's node id and the time it stored
//! the event): an agent that crashed after the script ran but before it noted the result finds
//! its own claim when it replays (also under a new node id), and does not count again; another
//! agent's copy, even one with the same node id, is a duplicate.

use super::{RedisLink, StateError};
use crate::redis_state::counters::{customer_tag, redis_key};
use aforo_core::entitlement::{CounterKey, CounterTarget};
use aforo_core::{Environment, Timestamp};
use std::collections::HashMap;

/// Claims a batch of events in one atomic step.
/// KEYS: the n dedup keys, then per slot (a counter and a source) the counter hash and the
/// per-source hash. ARGV: dedup time (ms), n, m (slots); per slot five values: the core counter
/// key, the window start (8 bytes, little-endian ns), the expiry (ms since the epoch: the
/// window's reset plus a day), the source ('' for none) and the window start in ms; then per
/// event its claim token (`<node id>@<received ns>`), the number k of its counters and k
/// triples (slot, units, 1 when its gateway took them from a lease of the counter else 0: those
/// come out of the gateway's prepaid units, see lease.lua).
/// Counts saturate at 2^53 (the largest quota a snapshot may hold), exact in Lua's doubles.
/// Returns per event: 1 counted now, 2 claimed before by this stored copy (same received
/// time: a replay after a crash, even under a new node id), 0 claimed by another copy.
pub const CLAIM_SCRIPT: &str =
    concat!(include_str!("counter_value.lua"), include_str!("claim.lua"));

/// One event to claim.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// Its environment (dedup namespaces never mix).
    pub env: Environment,
    /// Its id.
    pub id: String,
    /// Its customer (in a cluster, its id and counters live in the customer's slot).
    pub customer: String,
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
    /// Not answered (a cluster's node that holds its customer was unreachable, or its replica
    /// did not acknowledge): left unclaimed, claimed again later.
    Deferred = 3,
}

/// The per-source usage hash of a quota counter in a window (beside its counter).
pub fn source_key(link: &RedisLink, counter_key: &str, window_start: Timestamp) -> String {
    let rest = CounterKey::parse(counter_key).map_or(counter_key, |k| k.rest);
    link.key_in(
        customer_tag(rest),
        &format!("s:{rest}:{}", window_start.unix_nanos() / 1_000_000),
    )
}

/// The dedup key of an event id. With one primary, ids are deduplicated per environment; in a
/// cluster, per customer and environment (a claim must touch one slot), so an id another
/// customer used never drops this customer's event there.
fn dedup_key(link: &RedisLink, env: Environment, customer: &str, id: &str) -> String {
    link.key_in(
        &format!("{}:{customer}", env.as_str()),
        &format!("d:{}:{id}", env.as_str()),
    )
}

/// Claims events of one environment in as few atomic steps as the layout allows: one script
/// for the batch with one primary, one per customer in a cluster (each touches one slot).
/// Answers are in the order of `requests`. In a cluster, customers whose step failed are
/// `Deferred` (an error only when every step failed): a slot whose primary is failing over
/// holds up its own customers, not the others.
pub fn claim(
    link: &RedisLink,
    requests: &[ClaimRequest],
    dedup_ms: [u64; 2],
) -> Result<Vec<Claim>, StateError> {
    if !link.is_cluster() {
        return claim_one_step(link, requests, dedup_ms);
    }
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut by_customer: HashMap<&str, usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        let next = groups.len();
        let g = *by_customer.entry(r.customer.as_str()).or_insert(next);
        if g == next {
            groups.push((r.customer.as_str(), Vec::new()));
        }
        groups[g].1.push(i);
    }
    let mut out = vec![Claim::Deferred; requests.len()];
    let mut failed: Option<StateError> = None;
    let mut answered = false;
    for (customer, members) in groups {
        let group: Vec<ClaimRequest> = members.iter().map(|&i| requests[i].clone()).collect();
        let env = group.first().map_or("", |r| r.env.as_str());
        let tag = format!("{env}:{customer}");
        if let Some(t) = group
            .iter()
            .flat_map(|r| &r.counters)
            .find(|t| CounterKey::parse(&t.key).is_some_and(|k| customer_tag(k.rest) != tag))
        {
            failed = Some(StateError::Failed(format!(
                "the counter {} is not in customer {customer:?}'s hash slot: in a Redis Cluster, feature names must not contain ':'",
                t.key
            )));
            continue;
        }
        match claim_one_step(link, &group, dedup_ms) {
            Ok(answers) => {
                answered = true;
                for (i, a) in members.into_iter().zip(answers) {
                    out[i] = a;
                }
            }
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) if !answered => Err(e),
        _ => Ok(out),
    }
}

/// Claims events of one environment in one round trip and one atomic script: counters
/// shared by several events are read and written once.
fn claim_one_step(
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
    let mut per_event: Vec<Vec<(usize, u64, bool)>> = Vec::with_capacity(requests.len());
    for r in requests {
        let source = r.source.as_deref().unwrap_or("");
        let mut mine = Vec::with_capacity(r.counters.len());
        for t in &r.counters {
            let next = slots.len();
            let s = *index.entry((t.key.as_str(), source)).or_insert(next);
            if s == next {
                slots.push((t, source));
            }
            mine.push((s + 1, t.units, t.prepaid));
        }
        per_event.push(mine);
    }
    let answers = link.with(|c, s| {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&s.claim).arg(requests.len() + 2 * slots.len());
        for r in requests {
            cmd.arg(dedup_key(link, env, &r.customer, &r.id));
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
                .arg(*source)
                .arg(t.window_start.unix_millis());
        }
        for (r, mine) in requests.iter().zip(&per_event) {
            cmd.arg(format!("{}@{}", link.node_id(), r.received_ns))
                .arg(mine.len());
            for (slot, units, prepaid) in mine {
                cmd.arg(*slot).arg(*units).arg(u8::from(*prepaid));
            }
        }
        let (replicas, wait_ms) = link.wait_replicas();
        c.script_acked::<Vec<i64>>(CLAIM_SCRIPT, &cmd, replicas, wait_ms)
    })?;
    let (answers, acked) = answers;
    if !acked {
        // Claimed on the primary, not yet on a replica: not counted as settled. The replay
        // finds the claims this node's (no second count), or claims again if a failover lost
        // them.
        return Err(StateError::Failed(format!(
            "{} replica(s) did not acknowledge the claim within {} ms (redis_wait_replicas); it is retried",
            link.wait_replicas().0,
            link.wait_replicas().1
        )));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use aforo_core::entitlement::quota_key;
    use redis::cluster_routing::Slot;
    use std::time::Duration;

    fn link(cluster: bool) -> RedisLink {
        RedisLink::new(
            "redis://127.0.0.1:1",
            None,
            "aforo:",
            Duration::from_millis(10),
            "n",
            cluster,
            0,
        )
        .unwrap()
    }

    /// Customer ids are the callers' (an event's `customer_id`): with braces, colons, quotes
    /// and a would-be second tag, a customer's counter, share and event ids still share one
    /// slot (a claim never fails as CROSSSLOT), and two customers never share a key.
    #[test]
    fn hostile_customer_ids_keep_one_slot_per_customer_and_distinct_keys() {
        let l = link(true);
        let env = Environment::Sandbox;
        let ws = Timestamp::from_unix_secs(1_796_083_200);
        let hostile = [
            "acme",
            "a}b",
            "{x}",
            "}{",
            "a:b:c",
            "\",\"key\":\"x",
            "c{evil}d",
            "",
        ];
        let mut keys = std::collections::HashSet::new();
        for c in hostile {
            let counter = quota_key(env, c, "search");
            let daily = quota_key(env, c, "*daily_credits");
            let all = [
                redis_key(&l, &counter),
                redis_key(&l, &daily),
                source_key(&l, &counter, ws),
                dedup_key(&l, env, c, "evt-1"),
            ];
            let slot = Slot::for_key(&all[0]);
            for k in &all {
                assert_eq!(Slot::for_key(k), slot, "{c:?}: {k} in another slot");
                assert!(keys.insert(k.clone()), "{k} made twice");
            }
        }
        // One primary: the layout deployments already have, byte for byte.
        let l = link(false);
        let counter = quota_key(env, "acme", "search");
        assert_eq!(redis_key(&l, &counter), "aforo:q:sandbox:acme:search");
        assert_eq!(dedup_key(&l, env, "acme", "e"), "aforo:d:sandbox:e");
        assert_eq!(
            source_key(&l, &counter, ws),
            "aforo:s:sandbox:acme:search:1796083200000"
        );
    }
}
