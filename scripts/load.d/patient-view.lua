-- wrk: POST the prepared patient-view request, each with the next unused token (unique jti).
local tokens = {}
local next_token = 1
local body

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
  body = f:read("*a")
  f:close()
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
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. t }, body)
end

non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
