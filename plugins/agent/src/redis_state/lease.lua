-- Quota leases: aforo-core's StoredLeases::renew (shared/src/entitlement/lease.rs), the rule,
-- run atomically in Redis. One counter's leases live in one hash, so a call touches one key
-- (one Redis Cluster slot). plugins/agent/tests/redis_scripts.rs runs random renewals and
-- give-backs through this script and through the core's model and compares every answer.
-- KEYS[1]  the counter's lease hash
-- ARGV     node, window start (ms), quota, max_overshoot, lease given back (0: none), its unspent
--          units, want, need, now (ms), how long a lease stays open (ms), expiry of the hash (ms
--          since the epoch, after the window's end)
-- Fields   w window start (ms), g units granted, n last lease id,
--          o:<id> = node|units|granted at (ms) for each open lease
-- Returns  {lease id (0: none), units, left, returning}
local k = KEYS[1]
local node = ARGV[1]
local w = tonumber(ARGV[2])
local quota, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local back, unspent = tonumber(ARGV[5]), tonumber(ARGV[6])
local want, need = tonumber(ARGV[7]), tonumber(ARGV[8])
local now, open_ms, expire_at = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])

-- Integers as exact decimal text (Lua's own conversion keeps 14 digits).
local function int(x) return string.format('%.0f', x) end

local sw = tonumber(redis.call('HGET', k, 'w') or '')
if sw and w < sw then
  -- A node whose clock lags: nothing for a window that is over.
  return {0, 0, 0, 0}
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
local left = math.max(0, quota + budget - granted)
local floor = math.max(1, math.floor(budget / active))
local share = math.max(floor, math.floor(left / (2 * active)))
local units = math.min(math.max(math.min(want, share), need), left)
if units == 0 or units < need then
  redis.call('HSET', k, 'g', int(granted))
  return {0, 0, left, returning}
end
local id = redis.call('HINCRBY', k, 'n', 1)
redis.call('HSET', k, 'g', int(granted + units), 'o:' .. id, node .. '|' .. int(units) .. '|' .. int(now))
return {id, units, left - units, 0}
