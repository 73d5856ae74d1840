-- wrk script: POST the patient read with a random seeded id per request, counting GraphQL
-- errors (a 200 whose body carries "errors") as errors. Env: BENCH_IDS (file, one id per
-- line), BENCH_TOKEN (bearer token); optionally BENCH_QUERY_JSON (another operation, as a
-- JSON string, still taking the random id as $id), BENCH_VARS_JSON (more variables,
-- as JSON members after the id: ',"now":"…"') and BENCH_EXTRA_JSON (more request members).
local threads = {}
local n = 0

function setup(thread)
  n = n + 1
  thread:set("seed", n)
  table.insert(threads, thread)
end

function init(args)
  ids = {}
  for line in io.lines(os.getenv("BENCH_IDS")) do
    if #line > 0 then ids[#ids + 1] = line end
  end
  ok, errors = 0, 0
  math.randomseed(os.time() * 1000 + (seed or 0))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  local query = os.getenv("BENCH_QUERY_JSON")
  if query == nil or #query == 0 then
    query = '"query($id: ID!) { patient(id: $id) { id givenName familyName birthDate } }"'
  end
  prefix = '{"query":' .. query .. ',"variables":{"id":"'
  -- BENCH_EXTRA_JSON: more request members after the variables, e.g. a persisted query's
  -- ',"extensions":{…}' (with an empty query: the document by its hash alone).
  suffix = '"' .. (os.getenv("BENCH_VARS_JSON") or "") .. '}' .. (os.getenv("BENCH_EXTRA_JSON") or "") .. '}'
end

function request()
  local id = ids[math.random(#ids)]
  return wrk.format(nil, nil, nil, prefix .. id .. suffix)
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    errors = errors + 1
  else
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local o, e = 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    e = e + t:get("errors")
  end
  local s = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"ok":%d,"errors":%d,"socket_errors":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, o, e, s.connect + s.read + s.write + s.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
