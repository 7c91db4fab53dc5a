-- wrk: POST the prepared patient-view request, each with the next unused token (unique jti)
-- and its own hookInstance (a repeated one is a retry, answered from the store).
local tokens = {}
local next_token = 1
local head, tail, run

function init(args)
  local dir = args[1]
  local thread_index = id or 0          -- set per thread in setup()
  local threads = tonumber(args[2] or "1")
  local i = 0
  for line in io.lines(dir .. "/tokens.txt") do
    -- Each wrk thread takes every n-th token, so no two threads reuse one.
    if i % threads == thread_index then tokens[#tokens + 1] = line end
    i = i + 1
  end
  local f = io.open(dir .. "/request.json", "r")
  local body = f:read("*a")
  f:close()
  local named = '"hookInstance":"load"'
  local at = string.find(body, named, 1, true)
  head, tail = string.sub(body, 1, at - 1), string.sub(body, at + #named)
  -- Runs against one server (warm-up, measured) must not repeat an instance either.
  run = tostring(os.time()) .. string.format("%x", math.floor(os.clock() * 1e6))
end

local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

request = function()
  local t = tokens[next_token]
  next_token = next_token + 1
  if t == nil then t = "exhausted" end
  return wrk.format("POST", "/cds-services/running-knee-patient-view",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. t },
    head .. '"hookInstance":"load-' .. run .. '-' .. (id or 0) .. '-' .. next_token .. '"' .. tail)
end

non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
