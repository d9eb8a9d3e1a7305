-- wrk script: every request comes from a new client address, as a trusted proxy reports it
-- in X-Forwarded-For (11.0.0.0/8, up to 16.7 M addresses). Used by benches/load/rate_limit.sh.

local threads = {}
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  n = 0
end
function request()
  -- Each thread counts in its own quarter of 11.0.0.0/8 (up to 4 threads).
  local k = id * 4194304 + n
  n = n + 1
  local a = math.floor(k / 65536) % 256
  local b = math.floor(k / 256) % 256
  local c = k % 256
  return wrk.format("GET", "/api/feed?page_size=1", {["X-Forwarded-For"] = string.format("11.%d.%d.%d", a, b, c)})
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("n") end
  io.write(string.format("distinct client addresses sent: %d\n", total))
end
