-- Quota leases: aforo-core's StoredLeases::renew (shared/src/entitlement/lease.rs), the rule,
-- run atomically in Redis. One counter's leases live in one hash, so a call touches one key
-- (one Redis Cluster slot). plugins/agent/tests/redis_scripts.rs runs random renewals and
-- give-backs through this script and through the core's model and compares every answer.
-- KEYS[1]  the counter's lease hash
-- ARGV     node, window start (ms), window end (ms), quota, max_overshoot, lease given back
--          (0: none), its unspent units, want, need, now (ms; empty: Redis's own clock), how
--          long a lease stays open (ms), how early a window may be opened (ms), expiry of the
--          hash (ms since the epoch, after the window's end)
-- Fields   w window start (ms), g units granted, n last lease id,
--          o:<id> = node|units|granted at (ms) for each open lease
-- Returns  {lease id (0: none), units, left, returning, 1 if the window is current else 0}
local k = KEYS[1]
local node = ARGV[1]
local w, w_end = tonumber(ARGV[2]), tonumber(ARGV[3])
local quota, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local back, unspent = tonumber(ARGV[6]), tonumber(ARGV[7])
local want, need = tonumber(ARGV[8]), tonumber(ARGV[9])
local now = tonumber(ARGV[10])
local open_ms, ahead_ms, expire_at = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as exact decimal text (Lua's own conversion keeps 14 digits).
local function int(x) return string.format('%.0f', x) end

-- Over, not started yet by this clock, or older than the window served: nothing is granted
-- twice for a window, whatever a node's clock says (even after this hash expired).
local sw = tonumber(redis.call('HGET', k, 'w') or '')
if now >= w_end or w > now + ahead_ms or (sw and w < sw) then
  return {0, 0, 0, 0, 0}
end
if not sw or w > sw then
  redis.call('DEL', k)
  redis.call('HSET', k, 'w', int(w), 'g', 0, 'n', 0)
  redis.call('PEXPIREAT', k, int(expire_at))
end
local granted = tonumber(redis.call('HGET', k, 'g'))
if back > 0 then
  -- Once, and only for the node's own open lease: a repeated give-back returns nothing.
  local f = 'o:' .. int(back)
  local v = redis.call('HGET', k, f)
  if v then
    local holder, units = string.match(v, '^(.*)|(%d+)|%d+$')
    if holder == node then
      granted = math.max(0, granted - math.min(unspent, tonumber(units)))
      redis.call('HDEL', k, f)
    end
  end
end
-- Leases open too long count as spent; the others' nodes share what is left.
local nodes, active, returning = {[node] = true}, 1, 0
local all = redis.call('HGETALL', k)
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if string.sub(f, 1, 2) == 'o:' then
    local holder, units, at = string.match(v, '^(.*)|(%d+)|(%d+)$')
    if now - tonumber(at) >= open_ms then
      redis.call('HDEL', k, f)
    else
      returning = returning + tonumber(units)
      if not nodes[holder] then
        nodes[holder] = true
        active = active + 1
      end
    end
  end
end
-- quota + budget, at most 2^53 (exact in Lua's doubles however the sum rounds).
local left = math.max(0, math.min(quota + budget, 9007199254740992) - granted)
local floor = math.max(1, math.floor(budget / active))
local share = math.max(floor, math.floor(left / (2 * active)))
local units = math.min(math.max(math.min(want, share), need), left)
if units == 0 or units < need then
  redis.call('HSET', k, 'g', int(granted))
  return {0, 0, left, returning, 1}
end
local id = redis.call('HINCRBY', k, 'n', 1)
redis.call('HSET', k, 'g', int(granted + units), 'o:' .. id, node .. '|' .. int(units) .. '|' .. int(now))
return {id, units, left - units, 0, 1}
