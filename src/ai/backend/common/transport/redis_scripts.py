"""Lua scripts of the Redis Streams transport: each runs atomically and, unlike a pipeline of
commands, costs the client one command however many messages it carries (a pipelined XADD costs
redis-py ~30 µs, an argument of a script call ~1 µs)."""

from __future__ import annotations

# KEYS[1] = retry zset; ARGV = now, limit, stream prefix, message field
PROMOTE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local sep = string.find(member, '\\n', 1, true)
  if sep then
    redis.call('XADD', ARGV[3] .. string.sub(member, 1, sep - 1), '*', ARGV[4],
               string.sub(member, sep + 1))
  end
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""


# Everything an Outcome writes, and its acknowledgements (last), in one atomic call.
# KEYS[1] = retry zset; other keys are referred to by their index in KEYS.
# ARGV = field, now, job-state ttl, then sections, each a count followed by its items:
#   fan-outs (state key, end key, parent id, added branches)*, publish (key, body)*,
#   delayed (score, member)*, dead letters (key, body, error JSON)*, acks (key, group, n, id*n)*
# A fan-out is counted once per parent (field f:<parent> of the job's state), and not at all
# once the job has ended. Fan-outs come first: a job key of the wrong type fails the script
# before anything is written (Redis does not undo the writes of a script that fails midway).
COMMIT = """
local a = 1
local function take() local v = ARGV[a]; a = a + 1; return v end
local field, now, ttl = take(), take(), take()
for _ = 1, tonumber(take()) do
  local state, ended = KEYS[tonumber(take())], KEYS[tonumber(take())]
  local parent, added = take(), take()
  if redis.call('EXISTS', ended) == 0 and redis.call('HSETNX', state, 'f:' .. parent, '1') == 1 then
    redis.call('HINCRBY', state, 'open', added)
    redis.call('EXPIRE', state, ttl)
  end
end
for _ = 1, tonumber(take()) do
  local k = tonumber(take())
  redis.call('XADD', KEYS[k], '*', field, take())
end
for _ = 1, tonumber(take()) do
  local score = take()
  redis.call('ZADD', KEYS[1], score, take())
end
for _ = 1, tonumber(take()) do
  local k, body = tonumber(take()), take()
  redis.call('XADD', KEYS[k], '*', field, body, 'err', take(), 'at', now)
end
for _ = 1, tonumber(take()) do
  local k, group, n = tonumber(take()), take(), tonumber(take())
  local ids = {}
  for i = 1, n do ids[i] = take() end
  for i = 1, n, 1000 do
    redis.call('XACK', KEYS[k], group, unpack(ids, i, math.min(i + 999, n)))
  end
end
return 1
"""

# KEYS[1] = a stream; ARGV = field, bodies...: one entry per body, in order.
APPEND_MANY = """
for i = 2, #ARGV do redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[i]) end
return #ARGV - 1
"""

# XAUTOCLAIM from a cursor, with each claimed entry's delivery count (XAUTOCLAIM does not say it).
# KEYS[1] = stream; ARGV = group, consumer, min idle (ms), cursor, count.
# Returns {next cursor, {{id, {field, value, ...}, deliveries}, ...}}; deleted entries are left out.
CLAIM_IDLE = """
local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                        'COUNT', ARGV[5])
local claimed = {}
for _, entry in ipairs(reply[2]) do
  if entry and entry[2] then
    local info = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)[1]
    claimed[#claimed + 1] = {entry[1], entry[2], info and info[4] or 1}
  end
end
return {reply[1], claimed}
"""

# Resets the idle time of the entries that ARGV[2] still owns (XCLAIM JUSTID does not count a
# delivery); an entry another consumer has claimed meanwhile is left alone and reported.
# KEYS[1] = stream; ARGV = group, consumer, ids...
TOUCH_OWNED = """
local taken = {}
for i = 3, #ARGV do
  local info = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
  if info then
    if info[2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    else
      taken[#taken + 1] = ARGV[i]
    end
  end
end
return taken
"""
