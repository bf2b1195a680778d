-- Configuration of the aforo plugin for Kong 3.10+ (Kong without proxy-wasm): it asks a local
-- aforo-agent before proxying and reports usage after, through Kong's retrying queue.
local typedefs = require "kong.db.schema.typedefs"

return {
  name = "aforo",
  fields = {
    { protocols = typedefs.protocols_http },
    { config = {
        type = "record",
        fields = {
          { endpoint = typedefs.url { required = true, default = "http://127.0.0.1:8787",
              description = "base URL of the aforo agent" } },
          { api_key = { description = "sk_test_… (sandbox) or sk_live_… (production) key of this gateway",
              type = "string", required = true, encrypted = true, referenceable = true } },
          { feature = { description = "feature of the requests (metered as the catalog's metric of it); default: the service's name",
              type = "string" } },
          { key_header = { type = "string", default = "x-api-key" } },
          { customer_header = { description = "header carrying a customer id set by a trusted auth plugin (the agent must list gateway_key in tenant_keys)",
              type = "string" } },
          { request_id_header = { description = "header event ids derive from, only when an edge in front sets it and clients cannot; default: Kong's own request id",
              type = "string" } },
          { timeout_ms = { type = "integer", default = 500, between = { 1, 60000 } } },
          { failure_mode = { description = "open: an unreachable agent lets requests through; closed: 503",
              type = "string", default = "open", one_of = { "open", "closed" } } },
          { rate_limit_headers = { description = "false: no RateLimit-* headers to clients (a 429 keeps Retry-After); quotas are enforced and requests metered as before",
              type = "boolean", default = true } },
          { queue = typedefs.queue },
        },
        -- The names before 0.2.0, still accepted: Kong maps each to its new field
        -- (kong/db/schema/init.lua, Schema:process_auto_fields). No `deprecation` record: Kong
        -- knows it in a shorthand only from 3.7 (and `replaced_with` from 3.8), and a plugin
        -- schema with a field the metaschema lacks does not load.
        shorthand_fields = {
          { agent_url = { type = "string", func = function(value) return { endpoint = value } end } },
          { gateway_key = { type = "string", func = function(value) return { api_key = value } end } },
        },
      },
    },
  },
}
