"""Redis Streams implementation of :class:`~.base.MessageTransport` (Redis ≥ 7).

* queue ``q`` → stream ``{prefix}actor:{q}`` with consumer group ``q``; the message is the
  entry's field ``e``;
* delayed messages → sorted set ``{prefix}retry`` (score = due time), member
  ``queue + "\\n" + body``, moved back by a Lua script so that each moves exactly once;
* dead letters → stream ``{prefix}actor:{q}:dlq`` with fields ``e`` (original body), ``err``
  (JSON), ``at`` (Unix time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .base import DeadLetterEntry, Delivery, MessageTransport, Outcome, QueueDepth
from .redis_keys import DEFAULT_PREFIX, JOB_STATE_TTL_SECONDS, RedisKeys
from .redis_scripts import APPEND_MANY, COMMIT, PROMOTE_DUE

MESSAGE_FIELD = b"e"
_SEPARATOR = b"\n"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _next_id(entry_id: str) -> str:
    millis, seq = entry_id.split("-")
    return f"{millis}-{int(seq) + 1}"


def _id_key(entry_id: str) -> tuple[int, int]:
    millis, seq = entry_id.split("-")
    return int(millis), int(seq)


class RedisStreamsTransport(MessageTransport):
    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = redis
        self.keys = RedisKeys(prefix)
        self._promote_due = redis.register_script(PROMOTE_DUE)
        self._commit = redis.register_script(COMMIT)
        self._append_many = redis.register_script(APPEND_MANY)
        self._known_groups: set[str] = set()

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_PREFIX) -> RedisStreamsTransport:
        return cls(Redis.from_url(url, decode_responses=False), prefix=prefix)

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
            if "NOGROUP" not in str(e):
                raise
            self._known_groups.discard(queue)  # the stream was deleted under us: recreate
            await self.ensure_queue(queue)
            return []
        deliveries: list[Delivery] = []
        for _stream, entries in response or ():
            for entry_id, fields in entries:
                deliveries.append(
                    Delivery(queue, _text(entry_id), (fields or {}).get(MESSAGE_FIELD, b""))
                )
        return deliveries

    async def claim_idle(
        self, queue: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Delivery]:
        await self.ensure_queue(queue)
        _cursor, entries, *_deleted = await self._redis.xautoclaim(
            self.keys.actor_stream(queue),
            queue,
            consumer,
            min_idle_time=int(min_idle * 1000),
            start_id="0-0",
            count=count,
        )
        return [
            Delivery(queue, _text(entry_id), (fields or {}).get(MESSAGE_FIELD, b""))
            for entry_id, fields in entries
            if fields is not None
        ]

    async def touch(self, queue: str, consumer: str, message_ids: Sequence[str]) -> None:
        if message_ids:
            await self._redis.xclaim(
                self.keys.actor_stream(queue),
                queue,
                consumer,
                min_idle_time=0,
                message_ids=list(message_ids),
                justid=True,
            )

    async def commit(self, outcome: Outcome) -> None:
        if outcome.is_empty():
            return
        keys: list[str] = [self.keys.retry]
        index: dict[str, int] = {}

        def key(name: str) -> int:
            if name not in index:
                keys.append(name)
                index[name] = len(keys)  # Lua indexes from 1
            return index[name]

        args: list[bytes | str | int] = [MESSAGE_FIELD, repr(time.time()), JOB_STATE_TTL_SECONDS]
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
        args.append(len(outcome.branch_deltas))
        for job_id, delta in outcome.branch_deltas:
            args += [key(self.keys.job_branches(job_id)), delta]
        acks: dict[str, list[str]] = {}
        for delivery in outcome.acks:
            acks.setdefault(delivery.queue, []).append(delivery.message_id)
        args.append(len(acks))
        for queue, ids in acks.items():
            args += [key(self.keys.actor_stream(queue)), queue, len(ids), *ids]
        await self._commit(keys=keys, args=args)

    async def append_many(self, stream: str, field: bytes, bodies: Sequence[bytes]) -> None:
        """Append one entry per body to ``stream`` in one atomic call (job events)."""
        if bodies:
            await self._append_many(keys=[stream], args=[field, *bodies])

    async def promote_due(self, *, now: float | None = None, limit: int = 256) -> int:
        moved = await self._promote_due(
            keys=[self.keys.retry],
            args=[
                repr(time.time() if now is None else now),
                limit,
                self.keys.actor_stream_prefix,
                MESSAGE_FIELD,
            ],
        )
        return int(moved)

    async def depth(self, queue: str) -> QueueDepth:
        stream = self.keys.actor_stream(queue)
        try:
            groups = await self._redis.xinfo_groups(stream)
        except ResponseError as e:
            if "no such key" in str(e).lower():
                return QueueDepth(lag=0, pending=0)
            raise
        for group in groups:
            if _text(group["name"]) != queue:
                continue
            lag = group.get("lag")
            if lag is None:
                # Redis cannot tell the lag after entries were deleted from the middle of the
                # stream; the stream length is a safe upper bound for autoscaling.
                lag = max(await self._redis.xlen(stream) - int(group["pending"]), 0)
            return QueueDepth(lag=int(lag), pending=int(group["pending"]))
        return QueueDepth(lag=int(await self._redis.xlen(stream)), pending=0)  # no consumer yet

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
