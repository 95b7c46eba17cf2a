"""Redis Streams implementation of :class:`~.base.MessageTransport` (Redis ≥ 7).

* queue ``q`` → stream ``{prefix}actor:{q}`` with consumer group ``q``; the message is the
  entry's field ``e``;
* delayed messages → sorted set ``{prefix}retry`` (score = due time), member
  ``queue + "\\n" + body``, moved back by a Lua script so that each moves exactly once;
* dead letters → stream ``{prefix}actor:{q}:dlq`` with fields ``e`` (original body), ``err``
  (JSON), ``at`` (Unix time);
* a job's branch accounting → hash ``{prefix}job:{<id>}:state``, its end guard → string
  ``{prefix}job:{<id>}:end`` (:class:`~.redis_keys.RedisKeys`); cancelled jobs → sorted set
  ``{prefix}cancel`` and the pub/sub channel of the same name, whose messages read
  ``"<score> <job id>"``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .. import json as wire_json
from .base import (
    BranchEnd,
    BranchEnded,
    DeadLetterEntry,
    Delivery,
    JobEndResult,
    MessageTransport,
    Outcome,
    QueueDepth,
)
from .redis_connection import redis_client
from .redis_job_scripts import END_BRANCHES, END_JOB
from .redis_keys import (
    CANCEL_TTL_SECONDS,
    DEFAULT_PREFIX,
    JOB_END_TTL_SECONDS,
    JOB_STATE_TTL_SECONDS,
    REPLY_MAXLEN,
    REPLY_TTL_SECONDS,
    RedisKeys,
)
from .redis_scripts import (
    APPEND_MANY,
    CLAIM_IDLE,
    COMMIT,
    PROMOTE_DUE,
    REMOVE_IDLE_CONSUMERS,
    TOUCH_OWNED,
)
from .stream_depth import group_depth

log = logging.getLogger(__spec__.name if __spec__ else __name__)

MESSAGE_FIELD = b"e"
EVENT_FIELD = b"ev"
_SEPARATOR = b"\n"
_START = "0-0"
# replies of a server that is loading, failing over or running a long script: try again later
# errors of a server that is away, loading, out of memory (noeviction), failing over or busy:
# redis-py gives some their own classes (without the reply's code in the message) ...
_TRANSIENT_ERRORS = (
    redis_errors.ConnectionError,  # BusyLoadingError (LOADING) included
    redis_errors.TimeoutError,
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,  # MasterDownError included
    OSError,
)
# ... and leaves others plain replies, told by their code
_TRANSIENT_REPLIES = ("BUSY", "MISCONF", "NOREPLICAS", "LOADING", "MASTERDOWN", "TRYAGAIN")
BRANCH_DIGITS = 6
_BRANCH_ANSWERS = {
    -1: BranchEnded.DUPLICATE,
    -2: BranchEnded.JOB_ENDED,
    -3: BranchEnded.AFTER_JOB_END,
    -4: BranchEnded.JOB_STATE_LOST,
}
# the error of a job whose fan-out child finds no record of the fan-out (DESIGN.md §4.1)
JOB_STATE_LOST_ERROR = {
    "code": "processing_error",
    "message": "the job's branch state expired or was deleted before all its branches ended",
    "reason": "job_state_lost",
}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _next_id(entry_id: str) -> str:
    millis, seq = entry_id.split("-")
    return f"{millis}-{int(seq) + 1}"


def _id_key(entry_id: str) -> tuple[int, int]:
    millis, seq = entry_id.split("-")
    return int(millis), int(seq)


def _message_of(fields: Any) -> bytes:
    """The message field of an entry's fields (a dict, or a flat list from a script)."""
    if isinstance(fields, dict):
        return fields.get(MESSAGE_FIELD, b"")
    for i in range(0, len(fields or ()) - 1, 2):
        if fields[i] == MESSAGE_FIELD:
            return bytes(fields[i + 1])
    return b""


def branch_field(branch: Sequence[int]) -> str:
    """A fan-out position as a hash field whose string order is the branch order."""
    return ".".join(f"{index:0{BRANCH_DIGITS}d}" for index in branch)


_second_text: tuple[int, str] = (0, "")


def now_iso() -> str:
    """The current time as job events carry it (ISO 8601 in UTC, milliseconds, ``Z``); the text
    up to the second is made once a second (an event per envelope and hop asks for it)."""
    global _second_text
    now = time.time()
    second = int(now)
    if _second_text[0] != second:
        _second_text = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_text[1]}.{int((now - second) * 1000):03d}Z"


def parse_cancel_notice(data: bytes | str) -> tuple[str, float]:
    """``(job id, when it may be forgotten)`` of a message on the cancel channel."""
    score, _, job_id = _text(data).partition(" ")
    return job_id, float(score)


class RedisStreamsTransport(MessageTransport):
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        job_end_ttl: float = JOB_END_TTL_SECONDS,
    ) -> None:
        self._redis = redis
        self.keys = RedisKeys(prefix)
        self.job_end_ttl = max(int(job_end_ttl), 1)
        self._promote_due = redis.register_script(PROMOTE_DUE)
        self._commit = redis.register_script(COMMIT)
        self._append_many = redis.register_script(APPEND_MANY)
        self._claim_idle = redis.register_script(CLAIM_IDLE)
        self._touch_owned = redis.register_script(TOUCH_OWNED)
        self._end_branches = redis.register_script(END_BRANCHES)
        self._end_job = redis.register_script(END_JOB)
        self._remove_idle_consumers = redis.register_script(REMOVE_IDLE_CONSUMERS)
        self._known_groups: set[str] = set()
        self._claim_cursors: dict[str, str] = {}
        self._next_retry_report = 0.0

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, job_end_ttl: float = JOB_END_TTL_SECONDS
    ) -> RedisStreamsTransport:
        """A transport on the data plane's client (:func:`.redis_connection.redis_client`)."""
        return cls(redis_client(url), prefix=prefix, job_end_ttl=job_end_ttl)

    @property
    def redis(self) -> Redis:
        return self._redis

    async def ensure_queue(self, queue: str) -> None:
        if queue in self._known_groups:
            return
        try:
            # id "0": a group created after messages were published still receives them
            await self._redis.xgroup_create(
                self.keys.actor_stream(queue), queue, id="0", mkstream=True
            )
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._known_groups.add(queue)

    async def register_consumer(self, queue: str, consumer: str) -> None:
        await self.ensure_queue(queue)
        await self._redis.xgroup_createconsumer(self.keys.actor_stream(queue), queue, consumer)

    async def publish(self, queue: str, body: bytes) -> str:
        entry_id = await self._redis.xadd(self.keys.actor_stream(queue), {MESSAGE_FIELD: body})
        return _text(entry_id)

    async def publish_batch(self, queue: str, bodies: Sequence[bytes]) -> list[str]:
        if not bodies:
            return []
        stream = self.keys.actor_stream(queue)
        async with self._redis.pipeline(transaction=False) as pipe:
            for body in bodies:
                pipe.xadd(stream, {MESSAGE_FIELD: body})
            ids = await pipe.execute()
        return [_text(entry_id) for entry_id in ids]

    async def consume(
        self, queue: str, consumer: str, *, count: int, block: float | None = None
    ) -> list[Delivery]:
        await self.ensure_queue(queue)
        stream = self.keys.actor_stream(queue)
        block_ms = None if block is None else max(int(block * 1000), 1)
        try:
            response: Any = await self._redis.xreadgroup(
                queue, consumer, {stream: ">"}, count=count, block=block_ms
            )
        except ResponseError as e:
            await self._recreate_if_lost(queue, e)
            return []
        deliveries: list[Delivery] = []
        for _stream, entries in response or ():
            for entry_id, fields in entries:
                deliveries.append(Delivery(queue, _text(entry_id), _message_of(fields)))
        return deliveries

    async def claim_idle(
        self, queue: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Delivery]:
        await self.ensure_queue(queue)
        try:
            cursor, entries = await self._claim_idle(
                keys=[self.keys.actor_stream(queue)],
                args=[
                    queue,
                    consumer,
                    int(min_idle * 1000),
                    self._claim_cursors.get(queue, _START),
                    count,
                ],
            )
        except ResponseError as e:
            await self._recreate_if_lost(queue, e)
            return []
        self._claim_cursors[queue] = _text(cursor)  # "0-0" once the whole list was scanned
        return [
            Delivery(queue, _text(entry_id), _message_of(fields), int(deliveries))
            for entry_id, fields, deliveries in entries
        ]

    async def touch(self, queue: str, consumer: str, message_ids: Sequence[str]) -> list[str]:
        if not message_ids:
            return []
        try:
            taken = await self._touch_owned(
                keys=[self.keys.actor_stream(queue)], args=[queue, consumer, *message_ids]
            )
        except ResponseError as e:
            await self._recreate_if_lost(queue, e)
            return list(message_ids)  # nothing is pending any more: nobody owns them
        return [_text(entry_id) for entry_id in taken]

    async def _recreate_if_lost(self, queue: str, error: ResponseError) -> None:
        """After NOGROUP (the stream or its group was deleted: a Redis restarted without
        persistence, a flush) recreate the group; re-raise any other error."""
        if "NOGROUP" not in str(error):
            raise error
        self._known_groups.discard(queue)
        self._claim_cursors.pop(queue, None)
        await self.ensure_queue(queue)

    async def remove_idle_consumers(self, queue: str, *, min_idle: float) -> list[str]:
        """Remove the group's consumers that hold no pending entry and have not read for
        ``min_idle`` seconds (replicas that are gone); returns their names."""
        try:
            removed = await self._remove_idle_consumers(
                keys=[self.keys.actor_stream(queue)], args=[queue, int(min_idle * 1000)]
            )
        except ResponseError as e:
            await self._recreate_if_lost(queue, e)
            return []
        return [_text(name) for name in removed]

    async def commit(self, outcome: Outcome) -> int:
        if outcome.is_empty():
            return 0
        keys: list[str] = [self.keys.retry]
        index: dict[str, int] = {}

        def key(name: str) -> int:
            if name not in index:
                keys.append(name)
                index[name] = len(keys)  # Lua indexes from 1
            return index[name]

        args: list[bytes | str | int] = [MESSAGE_FIELD, repr(time.time()), JOB_STATE_TTL_SECONDS]
        args += [key(self.keys.events), EVENT_FIELD, len(outcome.events), *outcome.events]
        args.append(len(outcome.fan_outs))
        for fan_out in outcome.fan_outs:
            args += [
                key(self.keys.job_state(fan_out.job_id)),
                key(self.keys.job_end(fan_out.job_id)),
                fan_out.parent_id,
                fan_out.children,
                fan_out.branch_of or "",
                fan_out.branch_index,
            ]
        args.append(len(outcome.publish))
        for queue, body in outcome.publish:
            args += [key(self.keys.actor_stream(queue)), body]
        args.append(len(outcome.delayed))
        for m in outcome.delayed:
            args += [repr(m.due_at), m.queue.encode() + _SEPARATOR + m.body]
        args.append(len(outcome.dead_letters))
        for letter in outcome.dead_letters:
            error = json.dumps(dict(letter.error), default=str).encode()
            args += [key(self.keys.dead_letters(letter.queue)), letter.body, error]
        args += [REPLY_MAXLEN, REPLY_TTL_SECONDS, len(outcome.replies)]
        for reply in outcome.replies:
            args += [key(self.keys.reply(reply.gateway_id)), reply.body]
        acks: dict[str, list[str]] = {}
        for delivery in outcome.acks:
            acks.setdefault(delivery.queue, []).append(delivery.message_id)
        args.append(len(acks))
        for queue, ids in acks.items():
            args += [key(self.keys.actor_stream(queue)), queue, len(ids), *ids]
        return int(await self._commit(keys=keys, args=args))

    async def end_branches(self, ends: Sequence[BranchEnd]) -> list[BranchEnded]:
        if not ends:
            return []
        keys: list[str] = []
        args: list[bytes | str | int] = [
            JOB_STATE_TTL_SECONDS,
            self.job_end_ttl,
            wire_json.dumps(JOB_STATE_LOST_ERROR),
            CANCEL_TTL_SECONDS,
            REPLY_MAXLEN,
            REPLY_TTL_SECONDS,
        ]
        for end in ends:
            keys += [
                self.keys.job_state(end.job_id),
                self.keys.job_end(end.job_id),
                self.keys.events,
                self.keys.actor_stream(end.delivery.queue),
                self.keys.reply(end.reply_to) if end.reply_to else self.keys.events,
            ]
            args += [
                end.envelope_id,
                branch_field(end.branch),
                (b"s" if end.succeeded else b"f") + end.outcome,
                wire_json.dumps(dict(end.event))[:-1],
                "1" if end.fanned_out else "0",
                end.delivery.queue,
                end.delivery.message_id,
                end.parent_id or "",
                end.branch[-1] if end.branch else 0,
                "1" if end.reply_to else "0",
            ]
        answers = await self._end_branches(keys=keys, args=args)
        return [_BRANCH_ANSWERS.get(int(a), BranchEnded.OPEN) for a in answers]

    async def cancel_job(
        self, job_id: str, reason: str, *, keep: float | None = None
    ) -> JobEndResult:
        event = {"job_id": job_id, "kind": "cancelled", "data": {"reason": reason}, "at": now_iso()}
        return await self._end(job_id, "cancelled", event, keep)

    async def fail_job(
        self,
        job_id: str,
        error: Mapping[str, Any],
        event: Mapping[str, Any],
        *,
        keep: float | None = None,
    ) -> JobEndResult:
        failed = {
            "job_id": job_id,
            **event,
            "kind": "failed",
            "error": dict(error),
            "at": now_iso(),
        }
        # its other branches may still be on their way: remembered, and skipped, like a cancel
        return await self._end(job_id, "failed", failed, keep)

    async def _end(
        self, job_id: str, kind: str, event: Mapping[str, Any], keep: float | None
    ) -> JobEndResult:
        keep_for = CANCEL_TTL_SECONDS if keep is None else min(max(keep, 1.0), CANCEL_TTL_SECONDS)
        ended, ended_as = await self._end_job(
            keys=[
                self.keys.job_end(job_id),
                self.keys.job_state(job_id),
                self.keys.cancel,
                self.keys.events,
            ],
            args=[
                kind,
                CANCEL_TTL_SECONDS,
                wire_json.dumps(dict(event)),
                job_id,
                self.keys.cancel,
                f"{keep_for:.3f}",
            ],
        )
        return JobEndResult(ended=bool(ended), ended_as=_text(ended_as))

    async def cancels_in_force(self, now: float) -> list[tuple[str, float]]:
        """Jobs whose envelopes are skipped, with when each may be forgotten (Redis time),
        those not due by ``now``."""
        members: Any = await self._redis.zrangebyscore(
            self.keys.cancel, now, "+inf", withscores=True
        )
        return [(_text(job_id), float(at)) for job_id, at in members]

    async def append_many(self, stream: str, field: bytes, bodies: Sequence[bytes]) -> None:
        """Append one entry per body to ``stream`` in one atomic call (job events)."""
        if bodies:
            await self._append_many(keys=[stream], args=[field, *bodies])

    async def promote_due(self, *, now: float | None = None, limit: int = 256) -> int:
        moved, dead_lettered, stayed, dropped = await self._promote_due(
            keys=[self.keys.retry],
            args=[
                "" if now is None else repr(now),
                limit,
                self.keys.actor_stream_prefix,
                MESSAGE_FIELD,
            ],
        )
        if dead_lettered or stayed or dropped:
            self._report_stuck_retries(int(dead_lettered), int(stayed), int(dropped))
        return int(moved) + int(dead_lettered)

    def _report_stuck_retries(self, dead_lettered: int, stayed: int, dropped: int) -> None:
        """Log retries that could not move, at most once a minute (promotion runs often)."""
        now = time.monotonic()
        if now < self._next_retry_report:
            return
        self._next_retry_report = now + 60
        log.error(
            "due retries: %d refused by their streams (dead-lettered), %d refused with their"
            " DLQs too (kept), %d without a queue (dropped)",
            dead_lettered,
            stayed,
            dropped,
        )

    async def depth(self, queue: str) -> QueueDepth:
        return await group_depth(self._redis, self.keys.actor_stream(queue), queue)

    async def read_dead_letters(self, queue: str, *, count: int = 100) -> list[DeadLetterEntry]:
        entries: Any = await self._redis.xrange(self.keys.dead_letters(queue), count=count)
        return [
            DeadLetterEntry(
                entry_id=_text(entry_id),
                queue=queue,
                body=fields.get(MESSAGE_FIELD, b""),
                error=json.loads(fields.get(b"err", b"{}")),
                at=float(fields.get(b"at", b"0")),
            )
            for entry_id, fields in entries
        ]

    async def trim(self, queue: str) -> int:
        stream = self.keys.actor_stream(queue)
        try:
            groups = await self._redis.xinfo_groups(stream)
        except ResponseError:
            return 0
        group = next((g for g in groups if _text(g["name"]) == queue), None)
        if group is None:
            return 0  # nobody consumed yet: everything is undelivered
        keep_from = _next_id(_text(group["last-delivered-id"]))
        if int(group["pending"]):
            summary: dict[str, Any] = await self._redis.xpending(stream, queue)
            oldest_pending = _text(summary["min"])
            keep_from = min(keep_from, oldest_pending, key=_id_key)
        return int(await self._redis.xtrim(stream, minid=keep_from, approximate=False))

    async def close(self) -> None:
        await self._redis.aclose()

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, _TRANSIENT_ERRORS):
            return True
        if isinstance(error, ResponseError):
            return str(error).startswith(_TRANSIENT_REPLIES)
        return super().is_transient(error)
