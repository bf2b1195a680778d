-- The plugin's configuration as Kong hands it over: the old names mapped to their fields, the
-- given fields, then the schema's defaults for the rest. Shared by the spec runners. What Kong
-- does is read from its source (kong/db/schema/init.lua, Schema:process_auto_fields, 3.4.2 to
-- 3.10): a shorthand's value goes through its func, and without a `deprecation` record (this
-- plugin has none) what it returns overwrites the field.
local schema = require "kong.plugins.aforo.schema"

return function(conf)
  local record = schema.fields[2].config
  for _, shorthand in ipairs(record.shorthand_fields or {}) do
    local name, def = next(shorthand)
    local value = conf[name]
    if value ~= nil then
      conf[name] = nil
      for k, v in pairs(def.func(value)) do
        conf[k] = v
      end
    end
  end
  for _, field in ipairs(record.fields) do
    local name, def = next(field)
    if conf[name] == nil and def.default ~= nil then
      conf[name] = def.default
    end
  end
  return conf
end
