-- GET /lookup?id=N: one preloaded row (id 1..10000) by primary key.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

function init(args)
   bench_init(args, tonumber(args[1] or 4))
end

function request()
   counter = counter + 1
   return wrk.format("GET", "/lookup?id=" .. int_str(math.random(1, 10000)))
end
