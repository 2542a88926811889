-- POST /delete by primary key of rows that exist: bench/run.py preloads, before each run, the ids
-- base + tid * 1e7 + k for k = 1..per_thread (arguments: -- BASE PER_THREAD); each thread deletes its own ids
-- in order. A thread that runs past its block deletes nothing (still a 200); done() reports the counters,
-- and run.py reports such requests as "misses".
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

function init(args)
   base = tonumber(args[1])
   bench_init(args, 3)
end

function request()
   counter = counter + 1
   return post_json("/delete", '{"id":' .. int_str(base + tid * 1e7 + counter) .. '}')
end
