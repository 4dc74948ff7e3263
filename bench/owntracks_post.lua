-- wrk script for bench/bench_owntracks.py: one OwnTracks HTTP-mode location per request.
--
-- Run wrk with ONE thread (-t1): one Lua counter, so every post carries a
-- distinct, increasing tst (as a phone would send), 1 s apart from BASE.
-- Environment:
--   OTPATH    request path: /owntracks (Kares) or /pub (OwnTracks Recorder)
--   OTHOST    Host header value, e.g. 127.0.0.1:8083
--   OTUSER    X-Limit-U (Kares: must be the tracker credential's user name)
--   OTDEV     X-Limit-D; a new one per run, so each run's points can be counted
--   OTAUTH    the whole Authorization header value ("Basic ..."); empty: none
--   BASE      epoch seconds of the first point minus one
--   NDEV      >1: spread the posts over OTDEV0..OTDEV(NDEV-1)
-- At the end it prints one line, "WRKJSON {...}", with the counts and the
-- latency percentiles in microseconds.

counter = 0  -- global: done() reads it with thread:get
local base = tonumber(os.getenv("BASE") or "1700000000")
local path = os.getenv("OTPATH") or "/pub"
local host = os.getenv("OTHOST") or "127.0.0.1"
local user = os.getenv("OTUSER") or "jane"
local dev = os.getenv("OTDEV") or "phone"
local auth = os.getenv("OTAUTH") or ""
local ndev = tonumber(os.getenv("NDEV") or "1")

request = function()
  counter = counter + 1
  local d = dev
  if ndev > 1 then d = dev .. (counter % ndev) end
  local body = string.format(
    '{"_type":"location","lat":%.6f,"lon":%.6f,"tst":%d,"tid":"JJ","acc":10,"batt":80,"vel":0,"conn":"w"}',
    31.23 + (counter % 1000) * 1e-5, 121.47 + (counter % 777) * 1e-5, base + counter)
  -- a headers table given to wrk.format REPLACES wrk.headers (Host included): list them all
  local h = { ["Host"] = host, ["Content-Type"] = "application/json",
              ["X-Limit-U"] = user, ["X-Limit-D"] = d }
  if auth ~= "" then h["Authorization"] = auth end
  return wrk.format("POST", path, h, body)
end

local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

-- done() runs in wrk's main Lua state: the thread's counter is read through thread:get
done = function(summary, latency, requests)
  local sent = 0
  for _, t in ipairs(threads) do sent = sent + (t:get("counter") or 0) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"non2xx":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f,"built":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, sent))
end
