-- wrk script: POST /push bodies built from the template named by $PUSH_TEMPLATE
-- (bench/payloads/push_*.tmpl), with fresh event times on every request; print a
-- machine-readable summary.
--
-- The template holds `__TS__` (replaced by the request's ISO 8601 time, event and
-- created) and `__ID<k>__` (row k's driver_id). Redis leaves out a row whose event time
-- is not later than the stored one, so every request must carry a newer time than the
-- last write of its entities, even when requests of several connections are in flight:
--   * thread t (of $WRK_THREADS) owns $PUSH_BLOCKS entity blocks of `rows` ids each
--     (block b of thread t: ids $PUSH_ID_BASE + (t + b * threads) * rows + k); its n-th
--     request writes block n % $PUSH_BLOCKS, so two requests in flight at once never
--     share an entity as long as fewer than $PUSH_BLOCKS requests of a thread are in
--     flight (a thread has conns / threads connections);
--   * its time is $PUSH_TS_BASE_US + n * threads + t microseconds: distinct across
--     threads, increasing per block. bench.py sets the base to the next whole second,
--     after anything an earlier run wrote.
local template_file = assert(os.getenv("PUSH_TEMPLATE"), "PUSH_TEMPLATE is not set")
local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
local blocks = tonumber(os.getenv("PUSH_BLOCKS") or "64")
local id_base = tonumber(os.getenv("PUSH_ID_BASE") or "5000000")
local ts_base = tonumber((assert(os.getenv("PUSH_TS_BASE_US"), "PUSH_TS_BASE_US is not set")))

local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

-- Per thread (each thread has its own Lua state): the body of each block, split at __TS__.
local parts = {}
counter = 0  -- global: done() reads it with thread:get

local function split_plain(s, sep)
  local out, start = {}, 1
  while true do
    local i, j = string.find(s, sep, start, true)
    if not i then
      table.insert(out, string.sub(s, start))
      return out
    end
    table.insert(out, string.sub(s, start, i - 1))
    start = j + 1
  end
end

function init(args)
  local f = assert(io.open(template_file, "rb"))
  local template = f:read("*a")
  f:close()
  local rows = 0
  for _ in string.gmatch(template, "__ID%d+__") do rows = rows + 1 end
  for b = 0, blocks - 1 do
    local first = id_base + (tid + b * nthreads) * rows
    local body = string.gsub(template, "__ID(%d+)__", function(k)
      return string.format("%d", first + tonumber(k))
    end)
    parts[b + 1] = split_plain(body, "__TS__")
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local us = ts_base + counter * nthreads + tid
  local block = counter % blocks
  counter = counter + 1
  local sec = math.floor(us / 1000000)
  local ts = os.date("!%Y-%m-%dT%H:%M:%S", sec) .. string.format(".%06dZ", us - sec * 1000000)
  return wrk.format(nil, nil, nil, table.concat(parts[block + 1], ts))
end

done = function(summary, latency, requests)
  -- Blocks written per thread: the entities this run wrote (a request counted here may
  -- still have been in flight when wrk stopped).
  local built, used = 0, 0
  for _, t in ipairs(threads) do
    local n = t:get("counter") or 0
    built = built + n
    used = used + math.min(n, blocks)
  end
  io.write(string.format(
    "LUA_SUMMARY requests=%d duration_us=%d errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout))
  io.write(string.format("LUA_LATENCY_US p50=%d p90=%d p99=%d max=%d mean=%.1f\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
  io.write(string.format("LUA_PUSH built=%d blocks_used=%d\n", built, used))
end
