-- POST /insert with unique ids: id = base + tid * 1e7 + counter (base from the command line: -- BASE).
-- bench/run.py gives every run (warm-up included) its own base, so ids never repeat within a PIXELTABLE_HOME.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

function init(args)
   base = tonumber(args[1])
   bench_init(args, 1)
end

function request()
   counter = counter + 1
   local id = base + tid * 1e7 + counter
   return post_json("/insert", '{"id":' .. int_str(id) .. ',"name":"item-' .. int_str(id) .. '"}')
end
