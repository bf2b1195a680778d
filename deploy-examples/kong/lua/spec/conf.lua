-- The plugin's configuration as Kong hands it over: the given fields, then the schema's
-- defaults for the rest. Shared by the spec runners.
local schema = require "kong.plugins.aforo.schema"

return function(conf)
  for _, field in ipairs(schema.fields[2].config.fields) do
    local name, def = next(field)
    if conf[name] == nil and def.default ~= nil then
      conf[name] = def.default
    end
  end
  return conf
end
