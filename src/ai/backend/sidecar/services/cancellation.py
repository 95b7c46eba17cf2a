"""Which jobs' envelopes to skip: the sorted set ``bai:cancel`` (jobs cancelled, or failed by
the platform while branches may remain, scored by when they may be forgotten, in Redis time),
read at start and then followed through the pub/sub channel of the same name, so that checking
an envelope costs no round trip.

Memory is bounded: a job is remembered until its entry is due (once none of its envelopes can
be in flight: the gateway keeps a cancel until the job's deadline, plus a margin; at most a
day), then pruned from the cache, periodically, and from the set by each new entry. A
resubscription after a lost connection reads every entry not yet due.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ai.backend.common.aio import cancel_and_wait
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_streams import RedisStreamsTransport, parse_cancel_notice

from ..metrics import SidecarMetrics
from .retrying import Backoff

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

PRUNE_INTERVAL = 60.0


class CancelledJobs:
    def __init__(self, transport: RedisStreamsTransport, metrics: SidecarMetrics) -> None:
        self._transport = transport
        self._metrics = metrics
        self._forget_at: dict[str, float] = {}  # job id → when it may be forgotten (Redis time)
        self._redis_offset = 0.0  # Redis time minus local time, measured at each subscription
        self._next_prune = time.monotonic() + PRUNE_INTERVAL
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._forget_at

    def __len__(self) -> int:
        return len(self._forget_at)

    async def start(self) -> None:
        """Follow the cancel set; returns once it was read (or reading it failed once)."""
        self._task = asyncio.create_task(self._follow(), name="cancel-watcher")
        await self._subscribed.wait()

    async def close(self) -> None:
        await cancel_and_wait(self._task)

    def prune(self, now: float | None = None) -> None:
        """Forget the jobs whose entries are due (``now`` in Redis time)."""
        now = time.time() + self._redis_offset if now is None else now
        self._forget_at = {j: at for j, at in self._forget_at.items() if at > now}

    def _prune_when_due(self) -> None:
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_INTERVAL
            self.prune()

    def _add(self, job_id: str, forget_at: float) -> None:
        self._forget_at[job_id] = max(forget_at, self._forget_at.get(job_id, 0.0))

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
                    for job_id, forget_at in await self._transport.cancels_in_force(redis_now):
                        self._add(job_id, forget_at)
                    self._subscribed.set()
                    backoff.reset()
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=PRUNE_INTERVAL
                        )
                        self._prune_when_due()
                        if message is None or message.get("type") != "message":
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
