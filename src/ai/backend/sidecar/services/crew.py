"""The crew: ``happy-end`` and ``error-end`` end a branch of a job (DESIGN.md §4.1).

Each ending branch records its outcome once (idempotent by envelope id and terminal kind) and
closes its branch; the branch that closes the last one writes the job's single terminal event:
``succeeded`` with the final payload (or ``{"results": [...]}`` ordered by branch after a
fan-out) or ``failed`` with the first failed branch's error. All of it happens in one Lua script,
so a crash never leaves a branch counted without its event; the delivery is acknowledged after.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from redis.asyncio import Redis

from ai.backend.common.aio import MicroBatcher
from ai.backend.common.dto.base import ERROR_END, HAPPY_END
from ai.backend.common.dto.envelope import Envelope
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.base import Delivery, Outcome
from ai.backend.common.transport.redis_keys import JOB_STATE_TTL_SECONDS, RedisKeys

from .events import now_iso

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

BRANCH_DIGITS = 6

# Ends the branches of a batch of deliveries, each in turn:
# KEYS, five per delivery: done marker, outcomes hash, open-branch counter, events stream, the
#   crew's stream;
# ARGV[1] = marker ttl, then six per delivery: branch field, tagged outcome ("s" + result JSON
#   | "f" + error JSON), event head (a JSON object's opening and common fields, no closing
#   brace), fanned out ("1"/"0"), the crew's group, the delivery's entry id (acknowledged here).
# Returns, per delivery: open branches left, -2 (terminal event written) or -1 (already done).
_END_BRANCHES = """
local ttl = tonumber(ARGV[1])
local function end_branch(k, a)
  redis.call('XACK', KEYS[k + 5], ARGV[a + 5], ARGV[a + 6])
  if not redis.call('SET', KEYS[k + 1], '1', 'NX', 'EX', ttl) then return -1 end
  redis.call('HSET', KEYS[k + 2], ARGV[a + 1], ARGV[a + 2])
  redis.call('EXPIRE', KEYS[k + 2], ttl)
  local open = redis.call('DECR', KEYS[k + 3])
  if open >= 0 then
    redis.call('EXPIRE', KEYS[k + 3], ttl)
    return open
  end
  local flat = redis.call('HGETALL', KEYS[k + 2])
  local entries = {}
  for i = 1, #flat, 2 do entries[#entries + 1] = {flat[i], flat[i + 1]} end
  table.sort(entries, function(x, y) return x[1] < y[1] end)
  local first_error, results = nil, {}
  for _, entry in ipairs(entries) do
    local tag, body = string.sub(entry[2], 1, 1), string.sub(entry[2], 2)
    if tag == 'f' then
      if first_error == nil then first_error = body end
    else
      results[#results + 1] = body
    end
  end
  local tail = ',"data":{"branches":' .. #entries .. '}}'
  local event
  if first_error then
    event = ARGV[a + 3] .. ',"kind":"failed","error":' .. first_error .. tail
  else
    local result = results[1]
    if ARGV[a + 4] == '1' then result = '{"results":[' .. table.concat(results, ',') .. ']}' end
    event = ARGV[a + 3] .. ',"kind":"succeeded","result":' .. result .. tail
  end
  redis.call('XADD', KEYS[k + 4], '*', 'ev', event)
  redis.call('DEL', KEYS[k + 2], KEYS[k + 3])
  return -2
end
local answers = {}
for i = 0, #KEYS / 5 - 1 do answers[i + 1] = end_branch(i * 5, 1 + i * 6) end
return answers
"""

ALREADY_RECORDED = -1


def branch_field(branch: list[int]) -> str:
    return ".".join(f"{index:0{BRANCH_DIGITS}d}" for index in branch)


class CrewMember:
    """Processes deliveries of ``happy-end`` or ``error-end``. The branches that arrive in the
    same event-loop turn are ended in one script call."""

    def __init__(self, name: str, redis: Redis, keys: RedisKeys) -> None:
        if name not in (HAPPY_END, ERROR_END):
            raise ValueError(f"{name!r} is not a crew actor")
        self.name = name
        self.keys = keys
        self._script = redis.register_script(_END_BRANCHES)
        self._batcher: MicroBatcher[tuple[Delivery, Envelope], int] = MicroBatcher(
            self._end_branches
        )

    async def handle(self, delivery: Delivery, envelope: Envelope) -> Outcome:
        """End the envelope's branch; the script acknowledges the delivery itself."""
        await self._batcher.submit((delivery, envelope))
        return Outcome()

    async def _end_branches(self, batch: list[tuple[Delivery, Envelope]]) -> list[int]:
        keys: list[str] = []
        args: list[Any] = [JOB_STATE_TTL_SECONDS]
        for delivery, envelope in batch:
            keys += self._keys_for(delivery, envelope)
            args += self._args_for(delivery, envelope)
        answers = await self._script(keys=keys, args=args)
        for (_, envelope), answer in zip(batch, answers, strict=True):
            if int(answer) == ALREADY_RECORDED:
                log.info("branch {} of job {} was already recorded", envelope.id, envelope.job_key)
        return [int(answer) for answer in answers]

    def _keys_for(self, delivery: Delivery, envelope: Envelope) -> list[str]:
        job_id = envelope.job_key
        terminal = "failed" if self.name == ERROR_END else "succeeded"
        return [
            self.keys.branch_done(envelope.id, terminal),
            self.keys.job_outcomes(job_id),
            self.keys.job_branches(job_id),
            self.keys.events,
            self.keys.actor_stream(delivery.queue),
        ]

    def _args_for(self, delivery: Delivery, envelope: Envelope) -> list[Any]:
        if self.name == ERROR_END:
            outcome = b"f" + orjson.dumps(envelope.error or {"code": "processing_error"})
        else:
            outcome = b"s" + orjson.dumps(envelope.payload)
        head: dict[str, Any] = {
            "job_id": envelope.job_key,
            "envelope_id": envelope.id,
            "actor": self.name,
            "at": now_iso(),
        }
        if envelope.error and envelope.error.get("attempt"):
            head["attempt"] = envelope.error["attempt"]
        return [
            branch_field(envelope.branch),
            outcome,
            orjson.dumps(head)[:-1],
            "1" if envelope.branch else "0",
            delivery.queue,
            delivery.message_id,
        ]
