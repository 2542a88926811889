-- POST /search: the 10 rows with start <= id < start + 10, for a random start in 1..9991.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "common.lua")

function init(args)
   bench_init(args, tonumber(args[1] or 5))
end

function request()
   counter = counter + 1
   return post_json("/search", '{"start":' .. int_str(math.random(1, 9991)) .. '}')
end
