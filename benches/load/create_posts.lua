-- wrk script: every request creates a new post through the admin API (TOKEN, LEADER
-- from the environment), each with its own platformPostId, and counts the 201s: the
-- writes the server acknowledged, which must all be there after a crash.
local token = os.getenv("TOKEN")
local leader = os.getenv("LEADER") or "1"
local prefix = os.getenv("PREFIX") or tostring(os.time())
-- DISTINCT=k: each thread cycles through k platformPostIds, so after k creates every
-- request is a duplicate (409, nothing stored): a store that stops growing, as a poller's
-- does when most of what it fetches is already stored (benches/load/soak.sh).
local distinct = tonumber(os.getenv("DISTINCT") or "")
local threads = {}
local n = 0
-- A global, not a local: `thread:get` in `done` reads each thread's globals (a local of
-- the chunk is invisible to it, which printed "acknowledged 0").
acked = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

request = function()
  n = n + 1
  local id = n
  if distinct then id = (n - 1) % distinct + 1 end
  local body = string.format(
    '{"leaderId":%s,"platform":"X","content":"crash test post %s","platformPostId":"9%s%d%07d"}',
    leader, n, prefix, tid, id)
  return wrk.format("POST", "/api/posts", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

response = function(status, headers, body)
  if status == 201 or status == 200 then acked = acked + 1 end
end

done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("acked") or 0) end
  io.write(string.format("acknowledged %d\n", total))
end
