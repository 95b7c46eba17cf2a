"""Retrying calls to Redis (or the runtime) while they are away: exponential backoff, and a
retrier that repeats a transport call for as long as it fails transiently."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.base import MessageTransport

from ..metrics import SidecarMetrics

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

T = TypeVar("T")

BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0


class Backoff:
    """Waits ``BACKOFF_MIN`` · 2ⁿ seconds (capped at ``BACKOFF_MAX``, ±20 % jitter so that
    replicas do not retry in step) before the n-th retry."""

    def __init__(self, minimum: float = BACKOFF_MIN, maximum: float = BACKOFF_MAX) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.attempts = 0

    def next_delay(self) -> float:
        delay = min(self.minimum * 2**self.attempts, self.maximum)
        self.attempts += 1
        return delay * random.uniform(0.8, 1.2)

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())  # a retry timer, not synchronisation

    def reset(self) -> None:
        self.attempts = 0


class RedisRetrier:
    """Runs a transport call again, with backoff, for as long as it fails transiently (Redis
    away, loading, failing over); other errors are raised. One retrier serves a whole sidecar,
    so that an outage is logged once (and its end once), however many calls wait it out."""

    def __init__(self, transport: MessageTransport, metrics: SidecarMetrics) -> None:
        self._transport = transport
        self._metrics = metrics
        self._outage = False

    async def call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff()
        while True:
            try:
                result = await operation()
            except Exception as e:
                if not self._transport.is_transient(e):
                    raise
                self._metrics.redis_retries.inc()
                if not self._outage:
                    self._outage = True
                    log.warning("{} failed ({}); retrying until Redis answers", what, e)
                await backoff.wait()
                continue
            if self._outage:
                self._outage = False
                log.info("Redis answers again ({} succeeded)", what)
            return result
