"""The autoscaler against a real PostgreSQL and Redis, on a clock the test moves (the periods
are sub-second, as a spec may ask; the clock only makes the steps exact)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai.backend.common.dto.actor_spec import ActorSpec, ActorStatus
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.common.transport.stream_depth import count_undelivered
from ai.backend.manager.clients.queue_depth import queue_depths
from ai.backend.manager.models import ActorRow, SchedulerEventRow
from ai.backend.manager.repositories.autoscaling import AutoscalingRepository, ScalingUpdate
from ai.backend.manager.services.autoscaling.autoscaler import Autoscaler

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
FAST_SCALING = {
    "min_replicas": 0,
    "max_replicas": 10,
    "queue_length": 5,
    "polling_interval": "100ms",
    "cooldown": "2s",
    "scale_up": {"percent": 100, "pods": 1, "period": "0.5s"},
    "scale_down": {"percent": 50, "period": "500ms"},
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(db_engine, expire_on_commit=False)


@pytest.fixture
async def autoscaler(
    sessions: async_sessionmaker[AsyncSession], redis_client: Redis, key_prefix: str
) -> AsyncIterator[Autoscaler]:
    yield Autoscaler(
        repository=AutoscalingRepository(sessions), redis=redis_client, key_prefix=key_prefix
    )


async def add_actor(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    *,
    desired: int = 0,
    pinned: int | None = None,
    **scaling: Any,
) -> None:
    spec = ActorSpec.model_validate(
        {"name": name, "handler": "examples.pipeline:double", "scaling": FAST_SCALING | scaling}
    )
    async with sessions.begin() as session:
        session.add(
            ActorRow(
                name=name,
                spec=spec.model_dump(mode="json"),
                status=ActorStatus.ACTIVE,
                desired_replicas=desired,
                pinned_replicas=pinned,
            )
        )


async def desired(sessions: async_sessionmaker[AsyncSession], name: str) -> int:
    async with sessions() as session:
        row = await session.get(ActorRow, name)
        assert row is not None
        return row.desired_replicas


async def event_kinds(sessions: async_sessionmaker[AsyncSession], name: str) -> list[str]:
    async with sessions() as session:
        kinds = await session.scalars(
            sa.select(SchedulerEventRow.kind)
            .where(SchedulerEventRow.actor_name == name)
            .order_by(SchedulerEventRow.id)
        )
        return list(kinds)


async def publish(redis: Redis, stream: str, count: int, *, group: str | None = None) -> None:
    if group is not None:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    async with redis.pipeline(transaction=False) as pipe:
        for index in range(count):
            pipe.xadd(stream, {"e": str(index)})
        await pipe.execute()


async def read_all_of(redis: Redis, stream: str, group: str, *, count: int = 10_000) -> list[bytes]:
    """Deliver (up to ``count``) entries to one consumer of ``group``; returns their ids, now
    pending."""
    response: Any = await redis.xreadgroup(group, "replica-1", {stream: ">"}, count=count)
    return [entry_id for _, entries in response for entry_id, _ in entries]


async def test_burst_scales_zero_to_n_then_back_to_zero_after_the_cooldown(
    autoscaler: Autoscaler,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis,
    key_prefix: str,
) -> None:
    await add_actor(sessions, "burst")
    stream = RedisKeys(key_prefix).actor_stream("burst")
    await publish(redis_client, stream, 37, group="burst")  # wants ceil(37 / 5) = 8

    steps = [(0.0, 1), (0.1, 1), (0.5, 2), (1.0, 4), (1.5, 8), (2.0, 8)]
    for seconds, expected in steps:
        await autoscaler.run_once(at(seconds))
        assert await desired(sessions, "burst") == expected, f"at {seconds}s"

    delivered = await read_all_of(redis_client, stream, "burst")
    await autoscaler.run_once(at(2.5))  # delivered but pending: still work to do
    assert await desired(sessions, "burst") == 8
    await redis_client.xack(stream, "burst", *delivered)

    steps = [(3.0, 4), (3.5, 2), (4.0, 1), (4.5, 1), (4.9, 1), (5.0, 0), (5.5, 0)]
    for seconds, expected in steps:
        await autoscaler.run_once(at(seconds))
        assert await desired(sessions, "burst") == expected, f"at {seconds}s"
    assert await event_kinds(sessions, "burst") == [
        "activate",
        *["scale_up"] * 3,
        *["scale_down"] * 3,
        "scale_to_zero",
    ]


async def test_run_once_returns_the_changes_with_reasons(
    autoscaler: Autoscaler,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis,
    key_prefix: str,
) -> None:
    await add_actor(sessions, "a-busy")
    await add_actor(sessions, "b-quiet")
    await publish(redis_client, RedisKeys(key_prefix).actor_stream("a-busy"), 3, group="a-busy")
    changes = await autoscaler.run_once(T0)
    assert [(c.actor_name, c.current, c.desired, c.kind) for c in changes] == [
        ("a-busy", 0, 1, "activate")
    ]
    assert (
        changes[0].reason == "queue depth 3 (5 per replica wants 1): 0 → 1 (activation from zero)"
    )


async def test_running_twice_at_once_changes_nothing_more(
    autoscaler: Autoscaler,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis,
    key_prefix: str,
) -> None:
    await add_actor(sessions, "twice", desired=2)
    await publish(redis_client, RedisKeys(key_prefix).actor_stream("twice"), 50, group="twice")
    assert len(await autoscaler.run_once(T0)) == 1
    assert await autoscaler.run_once(T0) == []
    other = Autoscaler(
        repository=autoscaler.repository, redis=redis_client, key_prefix=key_prefix
    )  # another manager's memory: the polling interval does not hold it back
    assert await other.run_once(T0) == []
    assert await desired(sessions, "twice") == 4
    assert await event_kinds(sessions, "twice") == ["scale_up"]


async def test_each_actor_waits_for_its_polling_interval(
    autoscaler: Autoscaler,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis,
    key_prefix: str,
) -> None:
    await add_actor(sessions, "polled", scale_up={"percent": 100, "pods": 1, "period": "0s"})
    await publish(redis_client, RedisKeys(key_prefix).actor_stream("polled"), 50, group="polled")
    await autoscaler.run_once(T0)
    assert await desired(sessions, "polled") == 1
    await autoscaler.run_once(at(0.05))
    assert await desired(sessions, "polled") == 1
    await autoscaler.run_once(at(0.1))
    assert await desired(sessions, "polled") == 2


async def test_pinned_actors_are_left_alone(
    autoscaler: Autoscaler,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis,
    key_prefix: str,
) -> None:
    await add_actor(sessions, "pinned", desired=3, pinned=3)
    await publish(redis_client, RedisKeys(key_prefix).actor_stream("pinned"), 100, group="pinned")
    assert await autoscaler.run_once(T0) == []
    assert await autoscaler.run_once(at(10)) == []
    assert await desired(sessions, "pinned") == 3
    assert await event_kinds(sessions, "pinned") == []


async def test_a_concurrent_scale_wins(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_actor(sessions, "raced", desired=1)
    repository = AutoscalingRepository(sessions)
    [actor] = await repository.scalable_actors()
    async with sessions.begin() as session:  # `scale {replicas: 5}` between read and write
        await session.execute(
            sa.update(ActorRow)
            .where(ActorRow.name == "raced")
            .values(pinned_replicas=5, desired_replicas=5)
        )
    update = ScalingUpdate(
        desired_replicas=2,
        scaled_up_at=T0,
        scaled_down_at=None,
        idle_since=None,
        event_kind="scale_up",
        event_message="1 → 2",
    )
    assert not await repository.record(actor, update, now=T0)
    assert await desired(sessions, "raced") == 5
    assert await event_kinds(sessions, "raced") == []


async def test_unconsumed_stream_without_a_group_activates(
    autoscaler: Autoscaler,
    sessions: async_sessionmaker[AsyncSession],
    redis_client: Redis,
    key_prefix: str,
) -> None:
    """Nothing created the group yet (no replica ever ran): its first replica gets every entry."""
    await add_actor(sessions, "fresh")
    await publish(redis_client, RedisKeys(key_prefix).actor_stream("fresh"), 4)
    await autoscaler.run_once(T0)
    assert await desired(sessions, "fresh") == 1
    assert await event_kinds(sessions, "fresh") == ["activate"]


async def test_queue_depth_is_lag_plus_pending(redis_client: Redis, key_prefix: str) -> None:
    keys = RedisKeys(key_prefix)
    stream = keys.actor_stream("depth")
    await publish(redis_client, stream, 10, group="depth")
    await read_all_of(redis_client, stream, "depth", count=4)
    await redis_client.xadd(keys.actor_stream("no-group"), {"e": "1"})
    depths = await queue_depths(redis_client, key_prefix, ["depth", "missing", "no-group"])
    assert depths == {"depth": 10, "missing": 0, "no-group": 1}


async def test_queue_depth_counts_entries_when_redis_reports_no_lag(
    redis_client: Redis, key_prefix: str
) -> None:
    stream = RedisKeys(key_prefix).actor_stream("lagless")
    await publish(redis_client, stream, 6, group="lagless")
    delivered = await read_all_of(redis_client, stream, "lagless", count=2)
    last_delivered = delivered[-1].decode()
    undelivered: Any = await redis_client.xrange(stream, f"({last_delivered}", "+")
    await redis_client.xdel(stream, undelivered[0][0])  # a deleted entry makes the lag unknown
    groups: Any = await redis_client.xinfo_groups(stream)
    assert groups[0].get("lag") is None
    assert await count_undelivered(redis_client, stream, last_delivered) == 3
    assert await queue_depths(redis_client, key_prefix, ["lagless"]) == {"lagless": 3 + 2}
