"""Lua scripts that end jobs (DESIGN.md §4.1, §4.1a): every terminal write goes through the job's
end guard ``job:{id}:end``, so the first of ``succeeded`` / ``failed`` / ``cancelled`` wins and a
job has exactly one terminal event. See :meth:`RedisKeys.job_state` for the fields of a job's
state."""

from __future__ import annotations

# Ends the branches of a batch of deliveries, each in turn, each acknowledged after its writes.
# KEYS, five per branch: job state, job end guard, events stream, the crew's stream, the reply
#   stream of the gateway waiting for the job (header reply-to; the events stream when none).
# ARGV = state ttl, end ttl, the error of a job whose state was lost (JSON), the end ttl of such
#   a job (as long as a cancel's: its other branches may still be on their way), the reply
#   streams' bound and ttl, then ten per branch: envelope id, branch field, tagged outcome
#   ("s" + result JSON | "f" + error JSON), event head (the terminal event's JSON object without
#   kind, result, error, data and its closing brace), fanned out ("1"/"0"), the crew's group, the
#   delivery's entry id, the parent's id, the branch's index among its parent's children
#   (fan-out children only), and "1" when the terminal event also goes to the reply stream.
# Returns per branch: open branches left (>= 0), -1 not a branch to count (ended already, or the
# duplicate of a fan-out that went another way), -2 the job's terminal event written, -3 the job
# had ended already, -4 the job's state was lost: ended failed.
#
# A parent processed twice may fan out differently each time (another number of children, or
# once a fan-out and once a single result): only the first fan-out counted is the job's. A child
# of a fan-out that was not counted, or beyond the counted number, is not a branch of the job;
# nor is the end of an envelope whose fan-out was counted (its children are its branches).
END_BRANCHES = """
local state_ttl, end_ttl, lost_error = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local lost_ttl, reply_maxlen, reply_ttl = tonumber(ARGV[4]), ARGV[5], ARGV[6]

local function finish(k, a, kind, body, branches, ttl)
  redis.call('SET', KEYS[k + 2], kind, 'EX', ttl)
  local event = ARGV[a + 3] .. ',"kind":"' .. kind .. '",' .. body
                .. ',"data":{"branches":' .. branches .. '}}'
  redis.call('XADD', KEYS[k + 3], '*', 'ev', event)
  if ARGV[a + 9] == '1' then
    redis.call('XADD', KEYS[k + 5], 'MAXLEN', '~', reply_maxlen, '*', 'ev', event)
    redis.call('EXPIRE', KEYS[k + 5], reply_ttl)
  end
  redis.call('DEL', KEYS[k + 1])
end

local function end_branch(k, a)
  local state = KEYS[k + 1]
  if redis.call('EXISTS', KEYS[k + 2]) == 1 then return -3 end
  if ARGV[a + 4] == '0' and redis.call('EXISTS', state) == 0 then
    -- no fan-out recorded: the job's only branch, whose outcome is the job's
    local tag, body = string.sub(ARGV[a + 2], 1, 1), string.sub(ARGV[a + 2], 2)
    if tag == 'f' then
      finish(k, a, 'failed', '"error":' .. body, 1, end_ttl)
    else
      finish(k, a, 'succeeded', '"result":' .. body, 1, end_ttl)
    end
    return -2
  end
  if ARGV[a + 4] == '1' then
    local counted = redis.call('HGET', state, 'f:' .. ARGV[a + 7])
    if not counted then
      if redis.call('HEXISTS', state, 'open') == 1 then return -1 end
      -- a fan-out child, but no fan-out is recorded: the job's state expired or was deleted
      finish(k, a, 'failed', '"error":' .. lost_error, 0, lost_ttl)
      return -4
    end
    if tonumber(ARGV[a + 8]) >= tonumber(counted) then return -1 end
  end
  if redis.call('HEXISTS', state, 'f:' .. ARGV[a]) == 1 then return -1 end
  if redis.call('HSETNX', state, 'd:' .. ARGV[a], '1') == 0 then return -1 end
  redis.call('HSET', state, 'o:' .. ARGV[a + 1], ARGV[a + 2])
  local open = redis.call('HINCRBY', state, 'open', -1)
  if open >= 0 then
    redis.call('EXPIRE', state, state_ttl)
    return open
  end
  local flat = redis.call('HGETALL', state)
  local outcomes = {}
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'o:' then outcomes[#outcomes + 1] = {flat[i], flat[i + 1]} end
  end
  table.sort(outcomes, function(x, y) return x[1] < y[1] end)
  local first_error, results = nil, {}
  for _, entry in ipairs(outcomes) do
    local tag, body = string.sub(entry[2], 1, 1), string.sub(entry[2], 2)
    if tag == 'f' then
      if first_error == nil then first_error = body end
    else
      results[#results + 1] = body
    end
  end
  if first_error then
    finish(k, a, 'failed', '"error":' .. first_error, #outcomes, end_ttl)
  else
    local result = results[1]
    if ARGV[a + 4] == '1' then result = '{"results":[' .. table.concat(results, ',') .. ']}' end
    finish(k, a, 'succeeded', '"result":' .. result, #outcomes, end_ttl)
  end
  return -2
end

local answers = {}
for i = 0, #KEYS / 5 - 1 do
  local k, a = i * 5, 7 + i * 10
  answers[i + 1] = end_branch(k, a)
  redis.call('XACK', KEYS[k + 4], ARGV[a + 5], ARGV[a + 6])
end
return answers
"""

# Ends a job as ARGV[1] (``cancelled`` or ``failed``) unless it has ended: end guard, state
# dropped, the job added to the set of jobs whose envelopes consumers skip, scored by when it may
# be forgotten (Redis time + ARGV[6] seconds: once no envelope of the job can be in flight),
# entries due to be forgotten pruned, and the news published, then the event.
# KEYS = job end guard, job state, skip (cancel) set, events stream.
# ARGV = kind, ttl, event JSON, job id, cancel channel, seconds to keep the skip entry.
# Returns {1, kind}, or {0, the kind the job had ended as}.
END_JOB = """
local ended = redis.call('GET', KEYS[1])
if ended then return {0, ended} end
local kind, ttl = ARGV[1], tonumber(ARGV[2])
redis.call('SET', KEYS[1], kind, 'EX', ttl)
redis.call('DEL', KEYS[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local forget_at = now + tonumber(ARGV[6])
redis.call('ZADD', KEYS[3], forget_at, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('PUBLISH', ARGV[5], string.format('%.6f', forget_at) .. ' ' .. ARGV[4])
redis.call('XADD', KEYS[4], '*', 'ev', ARGV[3])
return {1, kind}
"""
