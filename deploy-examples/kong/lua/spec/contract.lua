-- Runs the shared decision table through the real aforo Kong plugin (handler.lua) against a
-- running aforo-agent, and prints each case's outcome as the client sees it, as JSON.
--   luajit spec/contract.lua TABLE.json http://127.0.0.1:PORT sk_test_…
local here = arg[0]:match("^(.*)/spec/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/spec/?.lua;" .. package.path

local cjson = require "cjson.safe"
local shim = require "pdk_shim"
local with_defaults = require "conf"
local handler = require "kong.plugins.aforo.handler"

local table_path, agent_url, gateway_key = arg[1], arg[2], arg[3]
assert(table_path and agent_url and gateway_key, "usage: contract.lua TABLE AGENT_URL GATEWAY_KEY")
local f = assert(io.open(table_path))
local decision_table = assert(cjson.decode(f:read("*a")))
f:close()

-- The plugin's configuration with the schema's defaults, as Kong would hand it over.
local conf = with_defaults({ endpoint = agent_url, api_key = gateway_key, customer_header = "x-customer-id" })

local outcomes = {}
for i, case in ipairs(decision_table.cases) do
  local headers = {}
  if case.key then
    headers["X-Api-Key"] = case.key
  end
  if case.tenant then
    headers["X-Customer-Id"] = case.tenant
  end
  local response = shim.new_request({
    headers = headers,
    client_ip = case.client_ip or "192.0.2.1",
    service = { name = case.feature },
    request_id = string.format("kong-%d", i),
  })
  handler:access(conf)
  local out
  if response.exit then
    local body = response.exit.body
    if type(body) == "string" then
      body = cjson.decode(body)
    end
    out = {
      status = response.exit.status,
      code = body and body.error and body.error.code or cjson.null,
      retry_after = response.exit.headers["retry-after"] or cjson.null,
    }
  else
    -- Proxied: the upstream answers 200, then the log phase meters.
    response.status = 200
    handler:log(conf)
    shim.flush_queue()
    out = { status = 200, code = "allowed", retry_after = cjson.null,
            remaining = response.headers["ratelimit-remaining"] or cjson.null }
  end
  table.insert(outcomes, out)
end
print(cjson.encode({ outcomes = outcomes, logs = shim.logs }))
