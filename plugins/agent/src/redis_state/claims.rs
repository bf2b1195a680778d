//! Claiming events in Redis: one Lua script per event records its id (the shared dedup window)
//! and adds its units to the quota counters in one atomic step, so an event sent through two
//! agents, or replayed after a crash or an outage, is counted once.
//!
//! The id is stored with the claiming agent's node id: an agent that crashed after the script
//! ran but before it noted the result finds its own claim when it replays, and does not count
//! again.

use super::{RedisLink, StateError};
use crate::redis_state::counters::redis_key;
use aforo_core::{Environment, Timestamp};

/// KEYS[1] the dedup key, then per counter its hash and its per-source hash.
/// ARGV[1] node id, ARGV[2] dedup time (ms); per counter five values: the core counter key,
/// the window start (8 bytes, little-endian ns), units, expiry (ms since the epoch, the
/// window's reset plus a day) and the source ('' for none).
/// Returns 1 counted now, 2 claimed before by this node, 0 claimed by another node.
pub const CLAIM_SCRIPT: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner then
  if owner == ARGV[1] then return 2 end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local function num(s)
  local n = 0
  for i = 8, 1, -1 do n = n * 256 + string.byte(s, i) end
  return n
end
local function bytes(n)
  local t = {}
  for i = 1, 8 do
    t[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(t)
end
local n = (#KEYS - 1) / 2
for i = 1, n do
  local ck, sk = KEYS[2 * i], KEYS[2 * i + 1]
  local a = 3 + 5 * (i - 1)
  local key, ws, units, exp, src = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4]
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
    redis.call('HSET', ck, 'v', ws .. bytes(count + units) .. key, 'c', (c % 4294967295) + 1)
    redis.call('PEXPIREAT', ck, exp)
    if src ~= '' then
      redis.call('HINCRBY', sk, src, units)
      redis.call('PEXPIREAT', sk, exp)
    end
  end
end
return 1
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

/// Claims events, all in one round trip; each claim is atomic on its own.
pub fn claim(
    link: &RedisLink,
    requests: &[ClaimRequest],
    dedup_ms: [u64; 2],
) -> Result<Vec<Claim>, StateError> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let answers = link.with(|c, s| {
        let mut p = redis::pipe();
        for r in requests {
            let cmd = p.cmd("EVALSHA").arg(s.claim).arg(1 + 2 * r.counters.len());
            cmd.arg(dedup_key(link, r.env, &r.id));
            for t in &r.counters {
                cmd.arg(redis_key(link, &t.key))
                    .arg(source_key(link, &t.key, t.window_start));
            }
            cmd.arg(link.node_id()).arg(dedup_ms[r.env.index()]);
            for t in &r.counters {
                let expiry = t.window_end.unix_nanos() / 1_000_000 + 86_400_000;
                cmd.arg(&t.key)
                    .arg(&t.window_start.unix_nanos().to_le_bytes()[..])
                    .arg(t.units)
                    .arg(expiry)
                    .arg(r.source.as_deref().unwrap_or(""));
            }
        }
        p.query::<Vec<i64>>(c)
    })?;
    Ok(answers
        .into_iter()
        .map(|a| match a {
            1 => Claim::Counted,
            2 => Claim::AlreadyOurs,
            _ => Claim::Elsewhere,
        })
        .collect())
}
