-- Runs given requests through the real aforo Kong plugin (handler.lua) against a running
-- aforo-agent and prints, as JSON, what the client got (status, code, the headers the plugin
-- set, names in lower case) and what the plugin sent the agent.
-- Header values are hex, so a test can send any bytes (quotes, CR/LF, non-UTF-8).
--   luajit spec/requests.lua REQUESTS.json http://127.0.0.1:PORT sk_test_…
-- REQUESTS.json: {"conf": {…overrides…}, "requests": [{"headers_hex": {"x-api-key": "6b…"},
--                 "service": "search", "request_id": "nginx-generated-1"}]}
local here = arg[0]:match("^(.*)/spec/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/spec/?.lua;" .. package.path

local cjson = require "cjson.safe"
local shim = require "pdk_shim"
local with_defaults = require "conf"
local handler = require "kong.plugins.aforo.handler"

local path, agent_url, gateway_key = arg[1], arg[2], arg[3]
assert(path and agent_url and gateway_key, "usage: requests.lua REQUESTS AGENT_URL GATEWAY_KEY")
local f = assert(io.open(path))
local input = assert(cjson.decode(f:read("*a")))
f:close()

-- The names before 0.2.0 (agent_url, gateway_key), so the deprecated path stays proven;
-- contract.lua uses endpoint and api_key.
local conf = { agent_url = agent_url, gateway_key = gateway_key }
for k, v in pairs(input.conf or {}) do
  conf[k] = v
end
conf = with_defaults(conf)

local function unhex(s)
  return (s:gsub("..", function(h)
    return string.char(tonumber(h, 16))
  end))
end

local function tohex(s)
  return (s:gsub(".", function(c)
    return string.format("%02x", string.byte(c))
  end))
end

-- Records the bodies the plugin sends to the agent (hex: they may hold any bytes).
local sent = {}
local http = require "resty.http"
local request_uri = http.request_uri
function http.request_uri(self, url, opts)
  table.insert(sent, { path = url:sub(#agent_url + 1), body_hex = tohex(opts.body or "") })
  return request_uri(self, url, opts)
end

local outcomes = {}
for _, r in ipairs(input.requests) do
  local headers = {}
  for k, v in pairs(r.headers_hex or {}) do
    headers[k] = unhex(v)
  end
  local response = shim.new_request({
    headers = headers,
    client_ip = "192.0.2.1",
    service = { name = r.service or "search" },
    request_id = r.request_id,
  })
  handler:access(conf)
  if response.exit then
    local body = response.exit.body
    if type(body) == "string" then
      body = cjson.decode(body)
    end
    table.insert(outcomes, { status = response.exit.status,
      code = body and body.error and body.error.code or cjson.null,
      headers = response.exit.headers })
  else
    response.status = 200
    handler:log(conf)
    shim.flush_queue()
    table.insert(outcomes, { status = 200, code = "allowed", headers = response.headers })
  end
end
print(cjson.encode({ outcomes = outcomes, sent = sent, logs = shim.logs }))
