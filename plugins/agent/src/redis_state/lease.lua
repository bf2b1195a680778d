-- Quota leases: aforo-core's StoredLeases::renew (shared/src/entitlement/lease.rs), the rule,
-- run atomically in Redis. A counter's leases live in the counter's own hash, beside its value,
-- so a call touches one key (one Redis Cluster slot) and leases are granted from what events
-- claimed (claim.lua) and reservations without leases (cas.lua) left of the quota.
-- plugins/agent/tests/redis_scripts.rs runs random renewals, give-backs and claims through this
-- script and through the core's model and compares every answer and count.
-- `later`, `num` and `bytes` come from counter_value.lua, put in front of it.
-- KEYS[1]  the counter's hash
-- ARGV     node, window start (ms), window end (ms), quota, max_overshoot, lease given back
--          (0: none), its unspent units, want, need, now (ms; empty: Redis's own clock), how
--          long a lease stays open (ms), how early a window may be opened (ms), expiry of the
--          hash (ms since the epoch, after the window's end), window start (8 bytes LE ns),
--          the core's counter key
-- Fields   v aforo-core's CounterValue (window start . count . key), c its CAS token (both as
--          cas.lua and claim.lua write them); w the leases' window (ms), n last lease id,
--          o:<id> = node|units|granted at (ms) for each open lease, p:<node> the node's
--          prepaid units (granted, not given back, not yet taken by its events' claims)
-- Returns  {lease id (0: none), units, left, returning, 1 if the window is current else 0}
local k = KEYS[1]
local node = ARGV[1]
local w, w_end = tonumber(ARGV[2]), tonumber(ARGV[3])
local quota, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local back, unspent = tonumber(ARGV[6]), tonumber(ARGV[7])
local want, need = tonumber(ARGV[8]), tonumber(ARGV[9])
local now = tonumber(ARGV[10])
local open_ms, ahead_ms, expire_at = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local wb, ckey = ARGV[14], ARGV[15]
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as exact decimal text (Lua's own conversion keeps 14 digits).
local function int(x) return string.format('%.0f', x) end


-- Over, not started yet by this clock, or older than the window served (by the leases or by
-- the count): nothing is granted twice for a window, whatever a node's clock says (even after
-- this hash expired).
local sw = tonumber(redis.call('HGET', k, 'w') or '')
local v = redis.call('HGET', k, 'v')
local vw = (v and #v >= 16) and string.sub(v, 1, 8) or nil
if now >= w_end or w > now + ahead_ms or (sw and w < sw) or (vw and later(vw, wb)) then
  return {0, 0, 0, 0, 0}
end
if not sw or w > sw then
  -- A new window for the leases: the old window's close.
  local all = redis.call('HKEYS', k)
  for i = 1, #all do
    local f = string.sub(all[i], 1, 2)
    if f == 'o:' or f == 'p:' then redis.call('HDEL', k, all[i]) end
  end
  -- Lease ids start after this clock's ms times 1,024: a give-back from before this hash was
  -- lost (a restart without its file, a failover) never matches a new lease.
  redis.call('HSET', k, 'w', int(w), 'n', int(now * 1024))
end
-- The count of this window (an older window's count reads as 0 and is replaced).
local granted = 0
if vw == wb then granted = num(string.sub(v, 9, 16)) end
local before = granted
local function store(count)
  local c = tonumber(redis.call('HGET', k, 'c') or '0')
  redis.call('HSET', k, 'v', wb .. bytes(count) .. ckey, 'c', (c % 2147483647) + 1)
  if vw ~= wb or redis.call('PTTL', k) < 0 then
    redis.call('PEXPIREAT', k, int(expire_at))
  end
end
if back > 0 then
  -- Once, and only for the node's own open lease: a repeated give-back returns nothing.
  local f = 'o:' .. int(back)
  local v = redis.call('HGET', k, f)
  if v then
    local holder, units = string.match(v, '^(.*)|(%d+)|%d+$')
    if holder == node then
      -- Never more than the node's pool: what its events' claims took was counted for them.
      local pool = tonumber(redis.call('HGET', k, 'p:' .. node) or '0')
      local b = math.min(unspent, tonumber(units), pool)
      granted = math.max(0, granted - b)
      redis.call('HSET', k, 'p:' .. node, int(pool - b))
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
  -- Written only when it changed (a new window, a give-back): a CAS writer's token stays.
  if vw ~= wb or granted ~= before then store(granted) end
  return {0, 0, left, returning, 1}
end
local id = redis.call('HINCRBY', k, 'n', 1)
redis.call('HSET', k, 'o:' .. int(id), node .. '|' .. int(units) .. '|' .. int(now))
redis.call('HINCRBY', k, 'p:' .. node, int(units))
store(granted + units)
return {id, units, left - units, 0, 1}
