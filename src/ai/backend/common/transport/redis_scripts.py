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


# Everything an Outcome writes, and its acknowledgements, in one atomic call.
# KEYS[1] = retry zset; other keys are referred to by their index in KEYS.
# ARGV = field, now, job-state ttl, then sections, each a count followed by its items:
#   publish (key, body)*, delayed (score, member)*, dead letters (key, body, error JSON)*,
#   counters (key, delta)*, acks (key, group, n, id*n)*
COMMIT = """
local a = 1
local function take() local v = ARGV[a]; a = a + 1; return v end
local field, now, ttl = take(), take(), take()
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
  local k = tonumber(take())
  redis.call('INCRBY', KEYS[k], take())
  redis.call('EXPIRE', KEYS[k], ttl)
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
