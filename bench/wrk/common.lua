-- Shared by the benchmark's wrk scripts (loaded with dofile by each of them).
--
-- Every script calls bench_init(args) from its init(args); `setup` gives each thread an index (tid, from 0) and
-- keeps the threads so that `done` can read their per-thread counters. `done` prints one line,
-- "BENCH_JSON {...}", with the counts, the errors and the latency percentiles (microseconds), which
-- bench/run.py parses (it also parses wrk's own "Non-2xx or 3xx responses" line as a cross-check).

local threads = {}
local next_tid = 0

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
   table.insert(threads, thread)
end

-- integers beyond 2^31 as decimal strings (ids are large: base + tid * 1e7 + counter)
function int_str(n)
   return string.format("%.0f", n)
end

-- the state of one thread: its index, a request counter, its random stream
counter = 0

function bench_init(args, seed)
   tid = tid or 0
   math.randomseed((seed or 1) * 1000 + tid)
   wrk.headers["Content-Type"] = "application/json"
end

function post_json(path, body)
   return wrk.format("POST", path, nil, body)
end

local function num(x)
   return int_str(x or 0)
end

function done(summary, latency, requests)
   local counters = {}
   for _, thread in ipairs(threads) do
      table.insert(counters, num(thread:get("counter")))
   end
   local e = summary.errors
   local parts = {
      '"requests":' .. num(summary.requests),
      '"duration_us":' .. num(summary.duration),
      '"errors_connect":' .. num(e.connect),
      '"errors_read":' .. num(e.read),
      '"errors_write":' .. num(e.write),
      '"errors_status":' .. num(e.status),
      '"errors_timeout":' .. num(e.timeout),
      '"p50_us":' .. num(latency:percentile(50)),
      '"p90_us":' .. num(latency:percentile(90)),
      '"p99_us":' .. num(latency:percentile(99)),
      '"max_us":' .. num(latency.max),
      '"thread_counters":[' .. table.concat(counters, ",") .. ']',
   }
   io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
