"""The job events stream ``bai:events`` as the gateways read it: one persisting consumer group
(``gateways``) whose consumers are the gateway replicas; the one that applies events takes over
what an earlier applier left unacknowledged. The stream
is trimmed only below what the group has acknowledged. Stored events are announced on a pub/sub
channel so that every replica can feed its own live listeners."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.common.transport.redis_streams import EVENT_FIELD

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

GROUP = "gateways"
_START = "0-0"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _no_group(error: Exception) -> bool:
    return isinstance(error, ResponseError) and "NOGROUP" in str(error)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _after(entry_id: str) -> str:
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"


@dataclass(frozen=True, slots=True)
class EventEntry:
    entry_id: str
    body: bytes


class EventsStreamClient:
    def __init__(self, redis: Redis, keys: RedisKeys, consumer: str) -> None:
        self._redis = redis
        self._keys = keys
        self._consumer = consumer

    @property
    def stream(self) -> str:
        return self._keys.events

    @property
    def stored_channel(self) -> str:
        """Pub/sub channel announcing events once stored (with their ``seq``)."""
        return f"{self._keys.prefix}jobs:stored"

    async def ensure_group(self) -> None:
        """Create the group from the stream's start (idempotent): events written before any
        gateway ran are applied too."""
        try:
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        await self._redis.xgroup_createconsumer(self.stream, GROUP, self._consumer)

    def _entries(self, raw: Any) -> list[EventEntry]:
        entries: list[EventEntry] = []
        for entry_id, fields in raw or ():
            if fields is None:  # deleted meanwhile (trimmed): nothing to apply
                continue
            entries.append(EventEntry(_text(entry_id), fields.get(EVENT_FIELD, b"")))
        return entries

    async def read(
        self,
        *,
        count: int,
        block: float | None,
        ack: Sequence[str] = (),
        announce: bytes | None = None,
    ) -> tuple[list[EventEntry], list[str]]:
        """New entries for this gateway, waiting up to ``block`` seconds for the first, and the
        ids of ``ack`` whose acknowledgement failed (to send again with the next read). In the
        same round trip, first: acknowledge ``ack`` (entries applied since the last read) and
        publish ``announce`` on the stored-events channel."""
        async with self._redis.pipeline(transaction=False) as pipe:
            if ack:
                pipe.xack(self.stream, GROUP, *ack)
            if announce is not None:
                pipe.publish(self.stored_channel, announce)
            pipe.xreadgroup(
                GROUP,
                self._consumer,
                {self.stream: ">"},
                count=count,
                block=None if block is None else int(block * 1000),
            )
            results: list[Any] = await pipe.execute(raise_on_error=False)
        unacked: list[str] = []
        for i, result in enumerate(results[:-1]):
            # an announcement that failed: listeners elsewhere catch up at their next database
            # read; an acknowledgement: sent again with the next read
            if isinstance(result, Exception) and not _no_group(result):
                log.warning("acknowledging or announcing stored job events failed ({})", result)
                if ack and i == 0:
                    unacked = list(ack)
        response = results[-1]
        if isinstance(response, Exception):
            if not _no_group(response):
                raise response
            await self.ensure_group()
            return [], unacked
        entries: list[EventEntry] = []
        for _stream, raw in response or ():
            entries += self._entries(raw)
        return entries, unacked

    async def claim_all_pending(self, *, count: int) -> AsyncIterator[list[EventEntry]]:
        """Every entry any consumer of the group holds unacknowledged, oldest first, taken over
        by this consumer (a new applier taking over from the previous one)."""
        cursor = _START
        while True:
            response: Any = await self._redis.xautoclaim(
                self.stream, GROUP, self._consumer, 0, start_id=cursor, count=count
            )
            entries = self._entries(response[1])
            if entries:
                yield entries
            cursor = _text(response[0])
            if cursor == _START:
                return

    async def remove_idle_consumers(self, *, min_idle: float) -> list[str]:
        """Remove the group's consumers (gateways that are gone) holding nothing, idle for
        ``min_idle`` seconds; returns their names."""
        try:
            consumers: Any = await self._redis.xinfo_consumers(self.stream, GROUP)
        except ResponseError:
            return []
        removed = []
        for consumer in consumers:
            name = _text(consumer["name"])
            if name == self._consumer or int(consumer["pending"]):
                continue
            if int(consumer.get("inactive", consumer["idle"])) >= min_idle * 1000:
                await self._redis.xgroup_delconsumer(self.stream, GROUP, name)
                removed.append(name)
        return removed

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self._redis.xack(self.stream, GROUP, *entry_ids)

    async def trim(self) -> int:
        """Drop entries below what every group of the stream has acknowledged: below the
        oldest pending entry and never past the last delivered one. Returns how many."""
        try:
            groups: Any = await self._redis.xinfo_groups(self.stream)
        except ResponseError:
            return 0
        if not groups:
            return 0  # nobody persists the events yet: keep them all
        keep_from: str | None = None
        for group in groups:
            candidate = _after(_text(group["last-delivered-id"]))
            if int(group["pending"]):
                summary: Any = await self._redis.xpending(self.stream, _text(group["name"]))
                candidate = min(candidate, _text(summary["min"]), key=_id_key)
            keep_from = candidate if keep_from is None else min(keep_from, candidate, key=_id_key)
        assert keep_from is not None
        return int(await self._redis.xtrim(self.stream, minid=keep_from, approximate=False))

    async def lag(self) -> int | None:
        """Entries not yet delivered to the gateways' group (``None`` when unknown)."""
        try:
            groups: Any = await self._redis.xinfo_groups(self.stream)
        except ResponseError:
            return None
        for group in groups:
            if _text(group["name"]) == GROUP:
                lag = group.get("lag")
                return None if lag is None else int(lag)
        return None

    async def announce(self, message: bytes) -> None:
        await self._redis.publish(self.stored_channel, message)

    async def announcements(self) -> AsyncIterator[bytes | None]:
        """Messages of the stored-events channel; ``None`` first, once subscribed (and again
        after each re-subscription, so the reader can catch up on what it may have missed)."""
        async with self._redis.pubsub() as pubsub:
            await pubsub.subscribe(self.stored_channel)
            yield None
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield message["data"]
