"""Lua scripts of the Redis Streams transport: each runs atomically and, unlike a pipeline of
commands, costs the client one command however many messages it carries (a pipelined XADD costs
redis-py ~30 µs, an argument of a script call ~1 µs)."""

from __future__ import annotations

# KEYS[1] = retry zset; ARGV = now ("" = the server's clock), limit, stream prefix, message field.
# A member its stream refuses (a key of the wrong type) goes to that stream's DLQ so that it does
# not hold up the others; if the DLQ refuses it too (Redis refuses all writes) it stays. A member
# without a queue cannot be routed and is dropped.
# Returns {moved, dead-lettered, stayed, dropped}.
PROMOTE_DUE = """
local now = ARGV[1]
if now == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) + tonumber(time[2]) / 1000000
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local moved, dead, stayed, dropped = 0, 0, 0, 0
for _, member in ipairs(due) do
  local sep = string.find(member, '\\n', 1, true)
  local done = true
  if not sep then
    dropped = dropped + 1
  else
    local stream = ARGV[3] .. string.sub(member, 1, sep - 1)
    local body = string.sub(member, sep + 1)
    if not redis.pcall('XADD', stream, '*', ARGV[4], body)['err'] then
      moved = moved + 1
    elseif not redis.pcall('XADD', stream .. ':dlq', '*', ARGV[4], body, 'err',
                           '{"code":"processing_error","reason":"retry_refused"}',
                           'at', tostring(now))['err'] then
      dead = dead + 1
    else
      stayed = stayed + 1
      done = false
    end
  end
  if done then redis.call('ZREM', KEYS[1], member) end
end
return {moved, dead, stayed, dropped}
"""


# Everything an Outcome writes, and its acknowledgements (last), in one atomic call.
# KEYS[1] = retry zset; other keys are referred to by their index in KEYS.
# ARGV = field, now, job-state ttl, then sections, each a count followed by its items:
#   events (events key, event field, then the count of events and the events),
#   fan-outs (state key, end key, parent id, children, the parent's own parent id or "", its
#   index there)*, publish (key, body)*,
#   delayed (score, member)*, dead letters (key, body, error JSON)*, then the reply streams'
#   bound and ttl and the replies (key, body)*, acks (key, group, n, id*n)*
# A fan-out is counted once per parent (field f:<parent> = its number of children), and only
# while the parent is a branch: not once the job has ended or the parent's own branch has (a
# duplicate that went another way), nor when the parent is a child beyond, or outside, the
# fan-out counted for its own parent.
# Job events come first (a call's partials before its outcome); an event the events stream
# refuses is dropped and counted (events are advisory: they never hold up the data plane).
# Then fan-outs: a job key of the wrong type fails the script before anything else is written
# (Redis does not undo the writes of a script that fails midway).
# Returns the number of events refused.
COMMIT = """
local a = 1
local function take() local v = ARGV[a]; a = a + 1; return v end
local field, now, ttl = take(), take(), take()
local events, event_field = KEYS[tonumber(take())], take()
local refused = 0
for _ = 1, tonumber(take()) do
  if redis.pcall('XADD', events, '*', event_field, take())['err'] then refused = refused + 1 end
end
for _ = 1, tonumber(take()) do
  local state, ended = KEYS[tonumber(take())], KEYS[tonumber(take())]
  local parent, children, branch_of, branch_index = take(), take(), take(), tonumber(take())
  local is_branch = true
  if branch_of ~= '' then
    local counted = redis.call('HGET', state, 'f:' .. branch_of)
    is_branch = counted and branch_index < tonumber(counted)
  end
  if is_branch and redis.call('EXISTS', ended) == 0
     and redis.call('HEXISTS', state, 'd:' .. parent) == 0
     and redis.call('HSETNX', state, 'f:' .. parent, children) == 1 then
    redis.call('HINCRBY', state, 'open', tonumber(children) - 1)
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
local reply_maxlen, reply_ttl = take(), take()
for _ = 1, tonumber(take()) do
  local k = tonumber(take())
  redis.call('XADD', KEYS[k], 'MAXLEN', '~', reply_maxlen, '*', 'ev', take())
  redis.call('EXPIRE', KEYS[k], reply_ttl)
end
for _ = 1, tonumber(take()) do
  local k, group, n = tonumber(take()), take(), tonumber(take())
  local ids = {}
  for i = 1, n do ids[i] = take() end
  for i = 1, n, 1000 do
    redis.call('XACK', KEYS[k], group, unpack(ids, i, math.min(i + 999, n)))
  end
end
return refused
"""

# KEYS[1] = a stream; ARGV = field, bodies...: one entry per body, in order.
APPEND_MANY = """
for i = 2, #ARGV do redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[i]) end
return #ARGV - 1
"""

# XAUTOCLAIM from a cursor, with each claimed entry's delivery count (XAUTOCLAIM does not say it).
# KEYS[1] = stream; ARGV = group, consumer, min idle (ms), cursor, count.
# Returns {next cursor, {{id, {field, value, ...}, deliveries}, ...}}; entries deleted from the
# stream are left out (Redis 7 also drops them from the pending list).
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

# Removes the group's consumers that hold no pending entry and have not read for ARGV[2] ms
# (replicas long gone), in one step so that none takes an entry in between.
# KEYS[1] = stream; ARGV = group, minimum idle (ms). Returns the names removed.
REMOVE_IDLE_CONSUMERS = """
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
"""
