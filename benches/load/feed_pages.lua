-- wrk script: every request is a random feed page of one shape (MODE), so no answer is
-- ever the one before it. The store is examples/seed_store's: post n (from 0) has id
-- n + 1, leader n % LEADERS + 1 and timestamp T0 + n minutes, all on X.
--   MODE   page | cursor | leader | leaders | source | leader_source | leaders_cursor | mix
--   POSTS  posts in the store (default 100000)
--   SPAN   how many of the newest posts the random positions fall in (default 100000:
--          a random page of 5,000)
--   URLS   requests each wrk thread draws once, in init, and then sends in turn (default
--          10000: the client spends its time sending, not in Lua, as plain wrk does; no
--          feed page is cached, so a request met again is read again). 0 draws every
--          request afresh when it is sent (about 5 us of client CPU per request more).
local T0 = 1735689600000
local LEADERS = 10
local mode = os.getenv("MODE") or "page"
local posts = tonumber(os.getenv("POSTS") or "100000")
local span = math.min(tonumber(os.getenv("SPAN") or "100000"), posts)
local modes = { "page", "cursor", "leader", "leaders", "source", "leader_source", "leaders_cursor" }

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

local function cursor()
  local n = posts - math.random(1, span)
  return string.format("%.0f-%.0f", T0 + n * 60000, n + 1)
end

local function three_leaders()
  local a = math.random(1, LEADERS)
  local b = (a + math.random(0, LEADERS - 2)) % LEADERS + 1
  local c = b
  while c == a or c == b do c = math.random(1, LEADERS) end
  return a .. "," .. b .. "," .. c
end

local function path(m)
  local pages = span / 20
  if m == "page" then
    return "/api/feed?page_size=20&page=" .. math.random(1, pages)
  elseif m == "cursor" then
    return "/api/feed?page_size=20&before=" .. cursor()
  elseif m == "leader" then
    return "/api/feed?page_size=20&leaders=" .. math.random(1, LEADERS) .. "&page=" .. math.random(1, pages / LEADERS)
  elseif m == "leaders" then
    return "/api/feed?page_size=20&leaders=" .. three_leaders() .. "&page=" .. math.random(1, pages * 3 / LEADERS)
  elseif m == "source" then
    return "/api/feed?page_size=20&source=x&page=" .. math.random(1, pages)
  elseif m == "leader_source" then
    return "/api/feed?page_size=20&source=x&leaders=" .. math.random(1, LEADERS) .. "&page=" .. math.random(1, pages / LEADERS)
  elseif m == "leaders_cursor" then
    return "/api/feed?page_size=20&leaders=" .. three_leaders() .. "&before=" .. cursor()
  end
  return path(modes[math.random(1, #modes)])
end

-- STATIC (a path such as /static/21397, for examples/bare_server): every request is that
-- path with the query this script would have sent for MODE, which the bare server ignores:
-- the static body at the same client-side cost per request as a feed row (drawing a random
-- URL in Lua), to tell the client's share of a row from the server's.
local static = os.getenv("STATIC")

local function draw()
  local p = path(mode)
  if static then
    p = static .. string.sub(p, string.find(p, "?", 1, true), -1)
  end
  return wrk.format("GET", p)
end

local urls = tonumber(os.getenv("URLS") or "10000")
local drawn = {}
local next_one = 0
if urls > 0 then
  local first_init = init
  init = function(args)
    first_init(args)
    for i = 1, urls do drawn[i] = draw() end
  end
  request = function()
    next_one = next_one % urls + 1
    return drawn[next_one]
  end
else
  request = draw
end
