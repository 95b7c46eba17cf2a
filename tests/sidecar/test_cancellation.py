"""The sidecar's cache of cancelled jobs: filled from the set and the channel, each entry
forgotten when it is due (when none of the job's envelopes can be in flight)."""

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
    await redis_client.zadd(transport.keys.cancel, {"expired": seconds - 1})
    await transport.cancel_job("before-start", "stop")
    await cancelled.start()
    assert "before-start" in cancelled
    assert "expired" not in cancelled  # due: none of its envelopes can be in flight
    await transport.cancel_job("after-start", "stop")
    for _ in range(500):
        if "after-start" in cancelled:
            break
        await asyncio.sleep(0.01)
    assert ("after-start" in cancelled, len(cancelled)) == (True, 2)


async def test_prune_forgets_each_cancel_when_it_is_due(
    transport: RedisStreamsTransport, redis_client: Redis, cancelled: CancelledJobs
) -> None:
    await transport.cancel_job("short", "stop", keep=60)
    await transport.cancel_job("long", "stop")
    await cancelled.start()
    seconds, _ = await redis_client.time()
    cancelled.prune(now=seconds + 30)
    assert ("short" in cancelled, "long" in cancelled) == (True, True)
    cancelled.prune(now=seconds + 120)
    assert ("short" in cancelled, "long" in cancelled) == (False, True)
    cancelled.prune(now=seconds + 86500)
    assert len(cancelled) == 0
