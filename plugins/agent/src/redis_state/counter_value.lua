-- Helpers every counter script starts with (the Rust side puts this file in front of cas.lua,
-- claim.lua and lease.lua: a Redis script cannot load another). A counter's value is aforo-core's
-- CounterValue (shared/src/entitlement/counter_contract.rs): window start (i64 LE ns) . count
-- (u64 LE) . the key.

-- Whether window start a (8 bytes LE) is later than b, byte by byte from the top: exact,
-- where Lua's doubles round nanoseconds past 2^53 (today's are about 2^60).
local function later(a, b)
  for i = 8, 1, -1 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return false
end
-- A count (8 bytes LE) as a number: exact up to 2^53, where counts saturate.
local function num(s)
  local v = 0
  for i = 8, 1, -1 do v = v * 256 + string.byte(s, i) end
  return v
end
-- A count as 8 bytes LE.
local function bytes(v)
  local t = {}
  for i = 1, 8 do
    t[i] = string.char(v % 256)
    v = math.floor(v / 256)
  end
  return table.concat(t)
end
