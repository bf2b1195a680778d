-- The compare-and-swap write of one counter (see CAS_SCRIPT in mod.rs for KEYS and ARGV).
-- A value is aforo-core's CounterValue (shared/src/entitlement/counter_contract.rs): window
-- start (i64 LE ns) . count (u64 LE) . the key; plugins/agent/tests/redis_scripts.rs runs this
-- script on a real Redis against values the core encodes and decodes. `later` comes from
-- counter_value.lua, put in front of it.
local c = tonumber(redis.call('HGET', KEYS[1], 'c') or '0')
if c ~= tonumber(ARGV[2]) then return 0 end
local v = redis.call('HGET', KEYS[1], 'v')
local same = false
if v and #v >= 16 and #ARGV[1] >= 16 then
  if later(string.sub(v, 1, 8), string.sub(ARGV[1], 1, 8)) then return 0 end
  same = string.sub(v, 1, 8) == string.sub(ARGV[1], 1, 8)
end
c = (c % 2147483647) + 1
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'c', c)
if not same or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return 1
