"""Which jobs' envelopes to skip: the sorted set ``bai:cancel`` (jobs cancelled, or failed by
the platform while branches may remain, scored by when in Redis time), read at start and then
followed through the pub/sub channel of the same name, so that checking an envelope costs no
round trip.

Memory is bounded: a job is remembered for a day after it ended (as long as its end guard),
older ones are pruned from the cache and, by each new entry, from the set; a resubscription
after a lost connection reads only what was added since the newest id it already knows.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ai.backend.common.aio import cancel_and_wait
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_keys import CANCEL_TTL_SECONDS
from ai.backend.common.transport.redis_streams import RedisStreamsTransport, parse_cancel_notice

from ..metrics import SidecarMetrics
from .retrying import Backoff

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

PRUNE_INTERVAL = 60.0
CLOCK_SLACK = 5.0  # re-read this much before the newest known cancel (scores of other writers)


class CancelledJobs:
    def __init__(self, transport: RedisStreamsTransport, metrics: SidecarMetrics) -> None:
        self._transport = transport
        self._metrics = metrics
        self._ttl = float(CANCEL_TTL_SECONDS)
        self._cancelled_at: dict[str, float] = {}  # job id → when (Redis time)
        self._newest = 0.0
        self._redis_offset = 0.0  # Redis time minus local time, measured at each subscription
        self._next_prune = time.monotonic() + PRUNE_INTERVAL
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._cancelled_at

    def __len__(self) -> int:
        return len(self._cancelled_at)

    async def start(self) -> None:
        """Follow the cancel set; returns once it was read (or reading it failed once)."""
        self._task = asyncio.create_task(self._follow(), name="cancel-watcher")
        await self._subscribed.wait()

    async def close(self) -> None:
        await cancel_and_wait(self._task)

    def prune(self, now: float | None = None) -> None:
        """Forget jobs cancelled more than the ttl ago (``now`` in Redis time)."""
        now = time.time() + self._redis_offset if now is None else now
        oldest = now - self._ttl
        self._cancelled_at = {j: at for j, at in self._cancelled_at.items() if at >= oldest}

    def _add(self, job_id: str, at: float) -> None:
        self._cancelled_at[job_id] = at
        self._newest = max(self._newest, at)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_INTERVAL
            self.prune()

    async def _follow(self) -> None:
        redis = self._transport.redis
        channel = self._transport.keys.cancel
        backoff = Backoff(maximum=5.0)
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(channel)
                    # read the set after subscribing: nothing cancelled in between is missed
                    seconds, micros = await redis.time()
                    redis_now = seconds + micros / 1e6
                    self._redis_offset = redis_now - time.time()
                    since = redis_now - self._ttl
                    if self._newest:
                        since = max(since, self._newest - CLOCK_SLACK)
                    for job_id, at in await self._transport.cancelled_since(since):
                        self._add(job_id, at)
                    self._subscribed.set()
                    backoff.reset()
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        try:
                            self._add(*parse_cancel_notice(message["data"]))
                        except ValueError:
                            log.warning("ignored a malformed cancel notice")
            except Exception as e:
                log.warning("lost the cancel channel ({}); subscribing again", e)
                self._metrics.count_error("cancel-watcher")
                self._subscribed.set()
                await backoff.wait()
