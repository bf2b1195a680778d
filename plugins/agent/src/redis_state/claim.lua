-- Claims a batch of events and adds their units to quota counters (see CLAIM_SCRIPT in
-- claims.rs for KEYS and ARGV). Counter values are aforo-core's CounterValue
-- (shared/src/entitlement/counter_contract.rs): window start (i64 LE ns) . count (u64 LE) . the
-- key; plugins/agent/tests/redis_scripts.rs runs this script on a real Redis against the core.
-- `later`, `num` and `bytes` come from counter_value.lua, put in front of it.
local ttl = ARGV[1]
local n, m = tonumber(ARGV[2]), tonumber(ARGV[3])
local cap = 9007199254740992
local add, prepaid, out = {}, {}, {}
local a = 4 + 5 * m
for i = 1, n do
  local token, k = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local owner = redis.call('GET', KEYS[i])
  if owner then
    if string.match(owner, '@(%d+)$') == string.match(token, '@(%d+)$') then
      -- Ours, from before: a write here (its expiry again) puts this connection's replication
      -- offset past the original claim, so a WAIT after this script covers that claim too.
      redis.call('PEXPIRE', KEYS[i], ttl)
      out[i] = 2
    else
      out[i] = 0
    end
    a = a + 3 * k
  else
    redis.call('SET', KEYS[i], token, 'PX', ttl)
    out[i] = 1
    for _ = 1, k do
      local s, u, pre = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
      a = a + 3
      add[s] = math.min((add[s] or 0) + u, cap)
      if pre == '1' then prepaid[s] = math.min((prepaid[s] or 0) + u, cap) end
    end
  end
end
for s = 1, m do
  local units = add[s]
  if units then
    local ck, sk = KEYS[n + 2 * s - 1], KEYS[n + 2 * s]
    local b = 4 + 5 * (s - 1)
    local key, ws, exp, src, wms = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
    local v = redis.call('HGET', ck, 'v')
    local count, stale = 0, false
    if v and #v >= 16 then
      local cur = string.sub(v, 1, 8)
      if cur == ws then
        count = num(string.sub(v, 9, 16))
      elseif later(cur, ws) then
        stale = true
      end
    end
    if not stale then
      -- Units the event's gateway admitted from a lease were counted when it was granted:
      -- taken from the gateway's pool (lease.lua) for this window, counted only past it.
      local pre = prepaid[s]
      local counting = units
      if pre and src ~= '' and redis.call('HGET', ck, 'w') == wms then
        local pf = 'p:gw/' .. src
        local pool = tonumber(redis.call('HGET', ck, pf) or '0')
        local covered = math.min(pre, pool)
        if covered > 0 then
          redis.call('HSET', ck, pf, string.format('%.0f', pool - covered))
          counting = units - covered
        end
      end
      local c = tonumber(redis.call('HGET', ck, 'c') or '0')
      local total = math.min(count + counting, cap)
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
