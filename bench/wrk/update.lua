-- POST /update by primary key: a random preloaded row (id 1..10000) gets a new name.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

function init(args)
   bench_init(args, tonumber(args[1] or 2))
end

function request()
   counter = counter + 1
   local id = math.random(1, 10000)
   return post_json("/update", '{"id":' .. int_str(id) .. ',"name":"upd-' .. int_str(tid) .. "-" .. int_str(counter) .. '"}')
end
