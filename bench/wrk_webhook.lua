-- wrk script for bench/receiver.py: POST pre-signed webhook bodies, rotating through them.
--
-- Usage: wrk -s bench/wrk_webhook.lua URL -- BODIES_FILE
-- BODIES_FILE has one request per line: "<X-Hub-Signature-256 value> <body>" (bodies are
-- compact ASCII JSON, so they never contain a newline). Requests are formatted once in
-- init(), so the per-request Lua cost is a table lookup. done() prints one JSON line
-- starting with "WRKJSON " that receiver.py parses.

local reqs = {}
local i = 0

function init(args)
  local path = args[1]
  for line in io.lines(path) do
    local sig, body = line:match("^(%S+) (.*)$")
    if sig then
      reqs[#reqs + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["User-Agent"] = "facebookexternalua",
        ["X-Hub-Signature-256"] = sig,
      }, body)
    end
  end
  -- each wrk thread starts at a different place in the list
  i = math.random(#reqs) - 1
end

function request()
  i = (i % #reqs) + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_p999_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
end
