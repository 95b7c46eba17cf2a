"""Retrying calls to Redis (or the runtime) while they are away: exponential backoff, and a
retrier that repeats a transport call for as long as it fails transiently."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ai.backend.common.aio import Backoff
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.base import MessageTransport

from ..metrics import SidecarMetrics

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

T = TypeVar("T")

__all__ = ["Backoff", "RedisRetrier"]


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
