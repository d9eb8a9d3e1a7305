-- wrk script: every request asks for a random feed page out of 5000, so the
-- rendered-page cache (512 entries) almost never answers: the uncached cost.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/feed?page_size=20&page=" .. math.random(1, 5000))
end
