"""The sidecar's cache of cancelled jobs: filled from the set and the channel, bounded to a
day."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ai.backend.common.transport.redis_streams import RedisStreamsTransport
from ai.backend.sidecar.metrics import SidecarMetrics
from ai.backend.sidecar.services.cancellation import CancelledJobs


@pytest.fixture
async def cancelled(transport: RedisStreamsTransport) -> AsyncIterator[CancelledJobs]:
    jobs = CancelledJobs(transport, SidecarMetrics("cancel-test"))
    yield jobs
    await jobs.close()


async def test_known_and_new_cancels_are_seen_and_old_ones_are_not(
    transport: RedisStreamsTransport, redis_client: Redis, cancelled: CancelledJobs
) -> None:
    seconds, _ = await redis_client.time()
    await redis_client.zadd(transport.keys.cancel, {"expired": seconds - 86401})
    await transport.cancel_job("before-start", "stop")
    await cancelled.start()
    assert "before-start" in cancelled
    assert "expired" not in cancelled  # older than a day: its guard is gone too
    await transport.cancel_job("after-start", "stop")
    for _ in range(500):
        if "after-start" in cancelled:
            break
        await asyncio.sleep(0.01)
    assert ("after-start" in cancelled, len(cancelled)) == (True, 2)


async def test_prune_forgets_cancels_older_than_a_day(
    transport: RedisStreamsTransport, redis_client: Redis, cancelled: CancelledJobs
) -> None:
    await transport.cancel_job("j", "stop")
    await cancelled.start()
    seconds, _ = await redis_client.time()
    cancelled.prune(now=seconds + 86000)
    assert "j" in cancelled
    cancelled.prune(now=seconds + 86500)
    assert "j" not in cancelled
    assert len(cancelled) == 0
