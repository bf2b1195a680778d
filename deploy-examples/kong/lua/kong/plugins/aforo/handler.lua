-- aforo for Kong 3.10+: the entitlement check in the access phase (POST /v1/canAccess on the
-- local aforo-agent, which answers from memory) and one usage event per billable response
-- (POST /v1/meter) through kong.tools.queue, which retries; an event's id is Kong's own id of
-- the request (random, never read from the client), so every served request is its own event
-- and a retried send counts once.
local http = require "resty.http"
local cjson = require "cjson.safe"
local Queue = require "kong.tools.queue"

local AforoHandler = {
  -- After authentication plugins (key-auth is 1250), before rate-limiting (910).
  PRIORITY = 950,
  VERSION = "0.3.0",
}

local FORWARDED = { "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset" }
-- With rate_limit_headers = false: clients learn no quota, only when to retry after a 429.
local RETRY_ONLY = { "Retry-After" }

-- The agent's headers this instance passes on to the client.
local function forwarded(conf)
  if conf.rate_limit_headers == false then
    return RETRY_ONLY
  end
  return FORWARDED
end

local function post(conf, path, body, request_id)
  local httpc = http.new()
  httpc:set_timeout(conf.timeout_ms)
  return httpc:request_uri(conf.endpoint .. path, {
    method = "POST",
    body = cjson.encode(body),
    headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. conf.api_key,
      ["X-Request-Id"] = request_id,
    },
  })
end

-- The request's id: Kong's $kong_request_id (3.5+: 32 random hex characters per request,
-- lua-kong-nginx-module), else nginx's $request_id; neither is read from the request. A header
-- is used only when the operator names one in request_id_header, trusting that an edge in
-- front sets it (a client that could set it would make N requests one event).
local function request_id(conf)
  if conf.request_id_header then
    local trusted = kong.request.get_header(conf.request_id_header)
    if type(trusted) == "string" and trusted ~= "" then
      return trusted
    end
  end
  return ngx.var.kong_request_id or ngx.var.request_id
end

-- The feature of the request: `feature` when this plugin instance names one, else the
-- service's name (as before 0.2.0, so an upgrade changes nothing a catalog relies on).
local function feature_of(conf)
  if conf.feature then
    return conf.feature
  end
  local service = kong.router.get_service()
  return service and service.name or "default"
end

function AforoHandler:access(conf)
  local feature = feature_of(conf)
  local body = { featureKey = feature, clientIp = kong.client.get_forwarded_ip() }
  -- The caller is its consumer key (cjson keeps any value one JSON string). Only with
  -- customer_header, set by an authentication plugin, does the gateway name the customer; the
  -- agent accepts that only from gateway keys listed in its tenant_keys.
  local key = kong.request.get_header(conf.key_header)
  if type(key) == "string" and key ~= "" then
    body.apiKey = key
  elseif conf.customer_header then
    local customer = kong.request.get_header(conf.customer_header)
    if type(customer) == "string" and customer ~= "" then
      body.tenantId = customer
    end
  end
  local id = request_id(conf)
  local res, err = post(conf, "/v1/canAccess", body, id)
  if not res then
    kong.log.warn("aforo: the agent at ", conf.endpoint, " did not answer: ", err)
    if conf.failure_mode == "closed" then
      return kong.response.exit(503, {
        error = { code = "entitlements_unavailable", message = "the entitlement service is unavailable" },
      })
    end
    return
  end
  if res.status == 200 then
    local decision = cjson.decode(res.body) or {}
    kong.ctx.plugin.customer_id = decision.customer_id
    kong.ctx.plugin.feature = feature
    kong.ctx.plugin.request_id = id
    for _, name in ipairs(forwarded(conf)) do
      local v = res.headers[name]
      if v then
        kong.response.set_header(name, v)
      end
    end
    return
  end
  -- 401, 403, 429, 503: the agent's answer goes to the client as it is.
  local headers = { ["Content-Type"] = "application/json" }
  for _, name in ipairs(forwarded(conf)) do
    local v = res.headers[name]
    if v then
      headers[name] = v
    end
  end
  return kong.response.exit(res.status, res.body, headers)
end

-- Sends queued usage events; a failure makes the queue retry the batch (ids dedupe).
local function send_events(conf, events)
  for _, e in ipairs(events) do
    local res, err = post(conf, "/v1/meter", e, e.id)
    if not res then
      return nil, "aforo: the agent did not answer: " .. tostring(err)
    end
    if res.status >= 500 or res.status == 429 then
      return nil, "aforo: the agent answered " .. res.status
    end
    if res.status >= 300 then
      -- A refusal (400, 401, 403) will not change on retry: log it, do not block the queue.
      kong.log.err("aforo: the agent refused a usage event (", res.status, "): ", res.body)
    end
  end
  return true
end

function AforoHandler:log(conf)
  local customer = kong.ctx.plugin.customer_id
  if type(customer) ~= "string" then
    return
  end
  local status = kong.response.get_status()
  if status >= 400 then
    return
  end
  local event = {
    tenantId = customer,
    featureKey = kong.ctx.plugin.feature,
    quantity = 1,
    id = kong.ctx.plugin.request_id,
  }
  local ok, err = Queue.enqueue(Queue.get_plugin_params("aforo", conf), send_events, conf, event)
  if not ok then
    kong.log.err("aforo: usage event not queued: ", err)
  end
end

return AforoHandler
