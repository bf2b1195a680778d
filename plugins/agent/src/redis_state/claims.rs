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
pub const CLAIM_SCRIPT: &str = r"
local ttl = ARGV[1]
local n, m = tonumber(ARGV[2]), tonumber(ARGV[3])
local cap = 9007199254740992
local add, out = {}, {}
local a = 4 + 4 * m
for i = 1, n do
  local token, k = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local owner = redis.call('GET', KEYS[i])
  if owner then
    if string.match(owner, '@(%d+)$') == string.match(token, '@(%d+)$') then out[i] = 2 else out[i] = 0 end
    a = a + 2 * k
  else
    redis.call('SET', KEYS[i], token, 'PX', ttl)
    out[i] = 1
    for _ = 1, k do
      local s, u = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
      a = a + 2
      add[s] = math.min((add[s] or 0) + u, cap)
    end
  end
end
local function num(s)
  local v = 0
  for i = 8, 1, -1 do v = v * 256 + string.byte(s, i) end
  return v
end
local function bytes(v)
  local t = {}
  for i = 1, 8 do
    t[i] = string.char(v % 256)
    v = math.floor(v / 256)
  end
  return table.concat(t)
end
for s = 1, m do
  local units = add[s]
  if units then
    local ck, sk = KEYS[n + 2 * s - 1], KEYS[n + 2 * s]
    local b = 4 + 4 * (s - 1)
    local key, ws, exp, src = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
    local v = redis.call('HGET', ck, 'v')
    local count, stale = 0, false
    if v and #v >= 16 then
      local cur = string.sub(v, 1, 8)
      if cur == ws then
        count = num(string.sub(v, 9, 16))
      elseif num(cur) > num(ws) then
        stale = true
      end
    end
    if not stale then
      local c = tonumber(redis.call('HGET', ck, 'c') or '0')
      local total = math.min(count + units, cap)
      redis.call('HSET', ck, 'v', ws .. bytes(total) .. key, 'c', (c % 2147483647) + 1)
      redis.call('PEXPIREAT', ck, exp)
      if src ~= '' then
        local mine = tonumber(redis.call('HGET', sk, src) or '0')
        redis.call('HSET', sk, src, string.format('%.0f', math.min(mine + units, cap)))
        redis.call('PEXPIREAT', sk, exp)
      end
    end
  end
end
return out
";

/// A quota counter an event adds to.
#[derive(Clone, Debug)]
pub struct CounterTarget {
    /// The core's counter key (`aforo:q:<env>:<customer>:<feature>`).
    pub key: String,
    /// Its current window.
    pub window_start: Timestamp,
    /// When that window resets.
    pub window_end: Timestamp,
    /// Units the event adds.
    pub units: u64,
}

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
    let rest = counter_key.strip_prefix("aforo:q:").unwrap_or(counter_key);
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
