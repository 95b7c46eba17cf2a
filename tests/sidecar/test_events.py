"""Job events while Redis is away: kept and written once it is back, within bounds of count
and bytes, beyond which new ones are dropped and counted; carried by commits when one comes
in the same loop turn, in order whatever fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from ai.backend.common.transport.base import FanOut, Outcome
from ai.backend.common.transport.redis_streams import RedisStreamsTransport
from ai.backend.sidecar.metrics import SidecarMetrics
from ai.backend.sidecar.services.consumer import BatchCommitter
from ai.backend.sidecar.services.events import EventPublisher
from ai.backend.sidecar.services.retrying import RedisRetrier


class UnreachableTransport(RedisStreamsTransport):
    """Fails every write with a connection error until ``reachable`` is set."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__(redis, prefix=prefix)
        self.reachable = asyncio.Event()
        self.failed_writes = 0

    async def append_many(self, stream: str, field: bytes, bodies: Sequence[bytes]) -> None:
        if not self.reachable.is_set():
            self.failed_writes += 1
            raise redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")
        await super().append_many(stream, field, bodies)


@pytest.fixture
def away(redis_client: Redis, key_prefix: str) -> UnreachableTransport:
    return UnreachableTransport(redis_client, key_prefix)


@pytest.fixture
async def metrics() -> SidecarMetrics:
    return SidecarMetrics("events-test")


@pytest.fixture
async def publisher(
    away: UnreachableTransport, metrics: SidecarMetrics
) -> AsyncIterator[EventPublisher]:
    events = EventPublisher(away, metrics, max_queued=3, max_queued_bytes=1000)
    events.start()
    yield events
    away.reachable.set()
    await events.close()


async def written(redis: Redis, transport: RedisStreamsTransport, count: int) -> list[Any]:
    for _ in range(500):
        entries: Any = await redis.xrange(transport.keys.events)
        if len(entries) >= count:
            return [orjson.loads(fields[b"ev"])["data"] for _id, fields in entries]
        await asyncio.sleep(0.01)
    raise TimeoutError(f"fewer than {count} events were written")


async def wait_failed_writes(transport: UnreachableTransport, count: int) -> None:
    while transport.failed_writes < count:
        await asyncio.sleep(0.01)


async def test_events_wait_for_redis_and_keep_their_order(
    publisher: EventPublisher, away: UnreachableTransport, redis_client: Redis
) -> None:
    for i in range(3):
        publisher.emit({"kind": "progress", "data": i})
    await wait_failed_writes(away, 2)  # tried, and tried again
    away.reachable.set()
    assert await written(redis_client, away, 3) == [0, 1, 2]
    assert publisher.dropped == 0


async def test_the_queue_is_bounded_by_count(
    publisher: EventPublisher, away: UnreachableTransport, redis_client: Redis
) -> None:
    publisher.emit({"kind": "progress", "data": "in hand"})
    await wait_failed_writes(away, 1)  # the first event is the batch being retried
    for i in range(5):
        publisher.emit({"kind": "progress", "data": i})
    assert publisher.queued[0] == 3
    assert publisher.dropped == 2
    away.reachable.set()
    assert await written(redis_client, away, 4) == ["in hand", 0, 1, 2]


async def test_the_queue_is_bounded_by_bytes(
    publisher: EventPublisher,
    away: UnreachableTransport,
    redis_client: Redis,
    metrics: SidecarMetrics,
) -> None:
    publisher.emit({"kind": "partial", "data": "in hand"})
    await wait_failed_writes(away, 1)
    publisher.emit({"kind": "partial", "data": "a" * 600})
    publisher.emit({"kind": "partial", "data": "b" * 600})  # 1,200 bytes queued: dropped
    publisher.emit({"kind": "partial", "data": "c"})
    assert publisher.dropped == 1
    dropped = {"actor": "events-test"}
    assert metrics.registry.get_sample_value("bai_sidecar_events_dropped_total", dropped) == 1
    away.reachable.set()
    assert await written(redis_client, away, 3) == ["in hand", "a" * 600, "c"]


class CountingTransport(RedisStreamsTransport):
    """Counts the events' own round trips; fails the first ``failing_commits`` commits."""

    def __init__(self, redis: Redis, prefix: str, failing_commits: int = 0) -> None:
        super().__init__(redis, prefix=prefix)
        self.own_writes = 0
        self.failing_commits = failing_commits

    async def append_many(self, stream: str, field: bytes, bodies: Sequence[bytes]) -> None:
        self.own_writes += 1
        await super().append_many(stream, field, bodies)

    async def commit(self, outcome: Outcome) -> int:
        if self.failing_commits:
            self.failing_commits -= 1
            raise redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")
        return await super().commit(outcome)


@dataclass
class Carrier:
    """A committer whose commits carry the publisher's events, on a counting transport."""

    transport: CountingTransport
    events: EventPublisher
    committer: BatchCommitter


@pytest.fixture
async def carrier(
    redis_client: Redis, key_prefix: str, metrics: SidecarMetrics
) -> AsyncIterator[Carrier]:
    transport = CountingTransport(redis_client, key_prefix)
    events = EventPublisher(transport, metrics)
    events.start()
    yield Carrier(
        transport, events, BatchCommitter(transport, RedisRetrier(transport, metrics), events)
    )
    await events.close()


async def test_a_commit_in_the_same_turn_carries_the_queued_events(
    carrier: Carrier, redis_client: Redis
) -> None:
    transport, events, committer = carrier.transport, carrier.events, carrier.committer
    await transport.ensure_queue("carrier")
    for i in range(3):
        events.emit({"kind": "running", "data": i})
    await committer.commit(Outcome(publish=[("carrier", b"next")]))
    await events.written(3)
    assert await written(redis_client, transport, 3) == [0, 1, 2]
    assert transport.own_writes == 0


async def test_events_of_a_failed_commit_are_written_after_all_in_order(
    carrier: Carrier, redis_client: Redis
) -> None:
    transport, events, committer = carrier.transport, carrier.events, carrier.committer
    transport.failing_commits = 1
    for i in range(2):
        events.emit({"kind": "progress", "data": i})
    commit = asyncio.create_task(committer.commit(Outcome(publish=[("carrier", b"next")])))
    events.emit({"kind": "progress", "data": 2})
    await commit  # failed once (its events went back to the queue), then retried
    await events.written(3)
    assert await written(redis_client, transport, 3) == [0, 1, 2]


async def test_events_of_a_commit_refused_for_good_are_written_once(
    carrier: Carrier, redis_client: Redis
) -> None:
    transport, events, committer = carrier.transport, carrier.events, carrier.committer
    await redis_client.set(transport.keys.job_state("poisoned"), b"not a hash")
    for i in range(2):
        events.emit({"kind": "partial", "data": i})
    poison = Outcome(fan_outs=[FanOut("poisoned", "parent", 2)])
    with pytest.raises(redis_errors.ResponseError, match="WRONGTYPE"):
        await committer.commit(poison)  # the script wrote the events, then failed
    events.emit({"kind": "partial", "data": 2})
    await committer.commit(Outcome(publish=[("carrier", b"next")]))
    await events.written(3)
    await events.close()  # all written: nothing more may come
    assert await written(redis_client, transport, 3) == [0, 1, 2]


class SlowEventsTransport(CountingTransport):
    """The publisher's own writes wait until ``release`` is set."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__(redis, prefix)
        self.appending = asyncio.Event()
        self.release = asyncio.Event()

    async def append_many(self, stream: str, field: bytes, bodies: Sequence[bytes]) -> None:
        self.appending.set()
        await self.release.wait()
        await super().append_many(stream, field, bodies)


async def test_commits_leave_a_batch_on_its_way_alone_and_events_keep_their_order(
    redis_client: Redis, key_prefix: str, metrics: SidecarMetrics
) -> None:
    transport = SlowEventsTransport(redis_client, key_prefix)
    events = EventPublisher(transport, metrics)
    events.start()
    committer = BatchCommitter(transport, RedisRetrier(transport, metrics), events)
    events.emit({"kind": "partial", "data": 0})
    await transport.appending.wait()  # the publisher writes event 1 itself, slowly
    await committer.commit(Outcome(publish=[("carrier", b"a")]))  # carries nothing
    events.emit({"kind": "partial", "data": 1})
    first_written = asyncio.create_task(events.written(1))
    await committer.commit(Outcome(publish=[("carrier", b"b")]))  # may not carry event 2 yet
    assert not first_written.done()
    transport.release.set()
    await first_written
    await events.written(2)
    await events.close()
    assert await written(redis_client, transport, 2) == [0, 1]
