-- wrk request generator for trigger-proxy benchmarks.
--   BENCH_TOKENS       a file of session tokens, one a line, used in turn (one per request)
--   BENCH_PATH         the request path (default /v1/triggers/spin-wheel)
--   BENCH_METHOD       POST (default, with the body "{}") or GET (no body)
--   BENCH_IDEMPOTENCY  "fixed" (one key for every request), "unique" (a new key each), or unset
--   BENCH_OFFSET       where in the tokens to start (the runner continues each scenario's cycle
--                      from where its last run stopped)
-- At the end it prints "STATUS <code>=<count> ..." so the caller can check that the scenario
-- measured the answers it claims to.
local path = os.getenv("BENCH_PATH") or "/v1/triggers/spin-wheel"
local method = os.getenv("BENCH_METHOD") or "POST"
local idempotency = os.getenv("BENCH_IDEMPOTENCY")
local file = os.getenv("BENCH_TOKENS")
local codes = {200, 400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503, 504}
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  tokens = {}
  if file then
    for line in io.lines(file) do tokens[#tokens + 1] = line end
  end
  i = tonumber(os.getenv("BENCH_OFFSET") or "0")
  for _, code in ipairs(codes) do _G["c" .. code] = 0 end
  cother = 0
end

function request()
  i = i + 1
  local headers = {}
  if method == "POST" then headers["Content-Type"] = "application/json" end
  if #tokens > 0 then
    headers["Authorization"] = "Bearer " .. tokens[(i - 1) % #tokens + 1]
  end
  if idempotency == "fixed" then
    headers["Idempotency-Key"] = "bench-fixed-key"
  elseif idempotency == "unique" then
    headers["Idempotency-Key"] = "bench-" .. i
  end
  if method == "GET" then return wrk.format("GET", path, headers) end
  return wrk.format(method, path, headers, "{}")
end

function response(status, headers, body)
  local name = "c" .. status
  if _G[name] ~= nil then _G[name] = _G[name] + 1 else cother = cother + 1 end
end

function done(summary, latency, requests)
  local parts = {}
  for _, code in ipairs(codes) do
    local n = 0
    for _, t in ipairs(threads) do n = n + t:get("c" .. code) end
    if n > 0 then parts[#parts + 1] = code .. "=" .. n end
  end
  local other = 0
  for _, t in ipairs(threads) do other = other + t:get("cother") end
  if other > 0 then parts[#parts + 1] = "other=" .. other end
  io.write("STATUS " .. table.concat(parts, " ") .. "\n")
  io.write(string.format("LATENCY p50=%d p99=%d\n", latency:percentile(50), latency:percentile(99)))
end
