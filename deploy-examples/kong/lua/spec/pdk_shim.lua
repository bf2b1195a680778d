-- A small stand-in for the parts of Kong's PDK and OpenResty the aforo plugin uses, so the
-- plugin's real handler.lua runs under plain LuaJIT against a real aforo-agent. HTTP goes
-- through LuaSocket; Kong's queue is a list flushed by the test, with the queue's retry rule.
local socket_http = require "socket.http"
local ltn12 = require "ltn12"

local shim = { exits = {}, queued = {}, logs = {} }

local function lower_keys(t)
  local out = {}
  for k, v in pairs(t or {}) do
    out[string.lower(k)] = v
  end
  return setmetatable(out, {
    __index = function(tbl, k)
      return rawget(tbl, string.lower(k))
    end,
  })
end

package.preload["resty.http"] = function()
  local M = {}
  M.__index = M
  function M.new()
    return setmetatable({ timeout = 60000 }, M)
  end
  function M:set_timeout(ms)
    self.timeout = ms
  end
  function M:request_uri(url, opts)
    local chunks = {}
    local headers = {}
    for k, v in pairs(opts.headers or {}) do
      headers[k] = v
    end
    headers["Content-Length"] = tostring(#(opts.body or ""))
    socket_http.TIMEOUT = self.timeout / 1000
    local ok, status, res_headers = socket_http.request({
      url = url,
      method = opts.method or "GET",
      headers = headers,
      source = ltn12.source.string(opts.body or ""),
      sink = ltn12.sink.table(chunks),
    })
    if not ok or type(status) ~= "number" then
      return nil, tostring(status)
    end
    return { status = status, headers = lower_keys(res_headers), body = table.concat(chunks) }
  end
  return M
end

package.preload["kong.db.schema.typedefs"] = function()
  return {
    protocols_http = { type = "set", default = { "http", "https" } },
    url = function(t)
      t.type = "string"
      return t
    end,
    queue = { type = "record", fields = {} },
  }
end

package.preload["kong.tools.queue"] = function()
  local Q = {}
  function Q.get_plugin_params(name, conf)
    return { name = name, max_batch_size = 1, max_retry_time = 60 }
  end
  function Q.enqueue(queue_conf, handler, handler_conf, value)
    table.insert(shim.queued, { handler = handler, conf = handler_conf, value = value })
    return true
  end
  return Q
end

-- Runs the queued sends as Kong's queue would: a failed batch is retried (here: 3 times).
function shim.flush_queue()
  local pending = shim.queued
  shim.queued = {}
  for _, item in ipairs(pending) do
    local ok, err
    for _ = 1, 3 do
      ok, err = item.handler(item.conf, { item.value })
      if ok then
        break
      end
    end
    if not ok then
      table.insert(shim.logs, "queue gave up: " .. tostring(err))
    end
  end
end

-- One request's view: headers, client address, service; and what the plugin did to the response.
function shim.new_request(req)
  local headers = lower_keys(req.headers)
  local response = { status = nil, headers = {}, exit = nil }
  shim.response = response
  -- $kong_request_id and $request_id: generated per request by Kong and nginx, never from a
  -- header (the test gives each request its own).
  _G.ngx = { var = { request_id = req.request_id, kong_request_id = req.request_id } }
  _G.kong = {
    request = {
      get_header = function(name)
        return headers[name]
      end,
    },
    client = {
      get_forwarded_ip = function()
        return req.client_ip
      end,
    },
    router = {
      get_service = function()
        return req.service
      end,
    },
    response = {
      exit = function(status, body, hdrs)
        response.exit = { status = status, body = body, headers = lower_keys(hdrs) }
      end,
      set_header = function(name, value)
        response.headers[string.lower(name)] = value
      end,
      get_status = function()
        return response.status
      end,
    },
    ctx = { plugin = {} },
    log = {
      warn = function(...)
        table.insert(shim.logs, table.concat({ ... }))
      end,
      err = function(...)
        table.insert(shim.logs, table.concat({ ... }))
      end,
      debug = function() end,
    },
  }
  return response
end

return shim
