"""The scheduling pass against a real PostgreSQL: placements written with device ids, reasons
for what waits, the start-failure backoff, and two schedulers racing on separate engines."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ai.backend.common.dto.actor_spec import ActorSpec, ActorStatus
from ai.backend.common.dto.agent import AgentStatus, ReplicaStatus
from ai.backend.manager.config import SchedulerConfig
from ai.backend.manager.models import ActorRow, AgentRow, ReplicaRow, SchedulerEventRow
from ai.backend.manager.services.scheduling.scheduler import Scheduler

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

# devices held beyond capacity, counted from the replica rows alone
OVER_ALLOCATED_DEVICES = sa.text(
    """
    SELECT r.agent_id, d.device_id,
           count(*) FILTER (WHERE r.slots ? 'cuda.device') AS whole,
           coalesce(sum((r.slots->>'cuda.shares')::numeric), 0) AS shares
    FROM replicas AS r, jsonb_array_elements_text(r.device_ids) AS d(device_id)
    WHERE r.status IN ('scheduled', 'starting', 'running', 'terminating')
    GROUP BY r.agent_id, d.device_id
    HAVING count(*) FILTER (WHERE r.slots ? 'cuda.device') > 1
        OR coalesce(sum((r.slots->>'cuda.shares')::numeric), 0) > 1
        OR (count(*) FILTER (WHERE r.slots ? 'cuda.device') > 0
            AND coalesce(sum((r.slots->>'cuda.shares')::numeric), 0) > 0)
    """
)
OVER_ALLOCATED_CPU = sa.text(
    """
    SELECT a.id FROM agents AS a JOIN replicas AS r ON r.agent_id = a.id
    WHERE r.status IN ('scheduled', 'starting', 'running', 'terminating')
    GROUP BY a.id, a.slots_total
    HAVING sum(coalesce((r.slots->>'cpu')::numeric, 0)) > (a.slots_total->>'cpu')::numeric
    """
)


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(db_engine, expire_on_commit=False)


def scheduler_of(sessions: async_sessionmaker[AsyncSession], **config: Any) -> Scheduler:
    return Scheduler(sessions, SchedulerConfig.model_validate(config))


async def add_agent(
    sessions: async_sessionmaker[AsyncSession], agent_id: str, *, gpus: int = 4, cpu: int = 16
) -> None:
    async with sessions.begin() as session:
        session.add(
            AgentRow(
                id=agent_id,
                addr=f"http://{agent_id}:6001",
                status=AgentStatus.ALIVE,
                slots_total={
                    "cpu": str(cpu),
                    "mem": str(64 << 30),
                    "cuda.device": str(gpus),
                    "cuda.shares": str(gpus),
                },
                slots_used={},
                devices=[
                    {"id": str(i), "kind": "cuda", "model": "A100-80G", "memory": 80 << 30}
                    for i in range(gpus)
                ],
                labels={},
                version="test",
            )
        )


async def add_actor(sessions: async_sessionmaker[AsyncSession], name: str, **spec: Any) -> None:
    validated = ActorSpec.model_validate(
        {"name": name, "handler": "examples.pipeline:double", **spec}
    )
    async with sessions.begin() as session:
        session.add(
            ActorRow(
                name=name,
                spec=validated.model_dump(mode="json"),
                status=ActorStatus.ACTIVE,
                generation=1,
            )
        )


async def add_pending(
    sessions: async_sessionmaker[AsyncSession], actor: str, count: int = 1, *, at: datetime = T0
) -> list[str]:
    ids = [f"{actor}-{random.getrandbits(48):012x}" for _ in range(count)]
    async with sessions.begin() as session:
        for i, replica_id in enumerate(ids):
            session.add(
                ReplicaRow(
                    id=replica_id,
                    actor_name=actor,
                    status=ReplicaStatus.PENDING,
                    generation=1,
                    created_at=at + timedelta(microseconds=i),
                    updated_at=at,
                )
            )
    return ids


async def replica(sessions: async_sessionmaker[AsyncSession], replica_id: str) -> ReplicaRow:
    async with sessions() as session:
        row = await session.get(ReplicaRow, replica_id)
        assert row is not None
        return row


async def events(sessions: async_sessionmaker[AsyncSession], kind: str) -> list[SchedulerEventRow]:
    async with sessions() as session:
        query = sa.select(SchedulerEventRow).where(SchedulerEventRow.kind == kind)
        return list(await session.scalars(query.order_by(SchedulerEventRow.id)))


async def test_pending_replicas_are_scheduled_with_device_ids(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_agent(sessions, "agent-1", gpus=4)
    await add_actor(sessions, "trainer", resources={"cpu": 2, "cuda.device": 2})
    first, second = await add_pending(sessions, "trainer", 2)

    report = await scheduler_of(sessions).schedule_pending(now=T0)

    assert [p.replica_id for p in report.placed] == [first, second]
    rows = [await replica(sessions, first), await replica(sessions, second)]
    assert [(r.status, r.agent_id, r.device_ids) for r in rows] == [
        (ReplicaStatus.SCHEDULED, "agent-1", ["0", "1"]),
        (ReplicaStatus.SCHEDULED, "agent-1", ["2", "3"]),
    ]
    assert rows[0].slots == {"cpu": "2", "cuda.device": "2"}
    async with sessions() as session:
        agent = await session.get(AgentRow, "agent-1")
    assert agent is not None and agent.slots_used == {"cpu": "4", "cuda.device": "4"}


async def test_what_does_not_fit_waits_with_a_reason_until_capacity_frees(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_agent(sessions, "agent-1", gpus=1)
    await add_actor(sessions, "big", resources={"cuda.device": 1})
    await add_actor(sessions, "small", resources={"cuda.shares": "0.5"})
    [blocker] = await add_pending(sessions, "big")
    waiting = await add_pending(sessions, "small", 2, at=T0 + timedelta(seconds=1))
    scheduler = scheduler_of(sessions)

    report = await scheduler.schedule_pending(now=T0)
    assert [p.replica_id for p in report.placed] == [blocker]
    message = "needs 0.5 cuda.shares of one GPU, the best matching GPU has 0 free"
    assert [(u.replica_id, u.message) for u in report.unplaceable] == [
        (waiting[0], message),
        (waiting[1], message),
    ]
    for replica_id in waiting:
        row = await replica(sessions, replica_id)
        assert (row.status, row.status_info) == (ReplicaStatus.PENDING, message)
    [event] = await events(sessions, "unschedulable")
    assert (event.actor_name, event.message, event.replica_id) == ("small", message, waiting[0])

    # the same reason is not repeated within the quiet interval, but is after it
    await scheduler.schedule_pending(now=T0 + timedelta(seconds=10))
    assert len(await events(sessions, "unschedulable")) == 1
    await scheduler.schedule_pending(now=T0 + timedelta(seconds=31))
    assert len(await events(sessions, "unschedulable")) == 2

    async with sessions.begin() as session:
        await session.execute(
            sa.update(ReplicaRow)
            .where(ReplicaRow.id == blocker)
            .values(status=ReplicaStatus.TERMINATED)
        )
    report = await scheduler.schedule_pending(now=T0 + timedelta(seconds=40))
    assert sorted(p.replica_id for p in report.placed) == sorted(waiting)
    assert not report.unplaceable
    for replica_id in waiting:
        row = await replica(sessions, replica_id)
        assert (row.status, row.device_ids, row.status_info) == (
            ReplicaStatus.SCHEDULED,
            ["0"],
            None,
        )


async def test_an_agent_that_failed_to_start_the_actor_is_passed_over_for_a_while(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_agent(sessions, "agent-a", gpus=1)
    await add_agent(sessions, "agent-b", gpus=1)
    await add_actor(sessions, "flaky", resources={"cuda.device": 1})
    async with sessions.begin() as session:
        session.add(
            SchedulerEventRow(
                actor_name="flaky",
                kind="start_failed",
                message="replica flaky-x failed on agent agent-a: exit 1",
                agent_id="agent-a",
                at=T0,
            )
        )
    first, second = await add_pending(sessions, "flaky", 2)
    scheduler = scheduler_of(sessions, start_failure_backoff="60s")

    report = await scheduler.schedule_pending(now=T0 + timedelta(seconds=10))
    assert [(p.replica_id, p.agent_id) for p in report.placed] == [(first, "agent-b")]
    [waiting] = report.unplaceable
    assert waiting.replica_id == second
    assert waiting.message == (
        "needs 1 cuda.device, the best matching agent has 0 free"
        " (passed over after a recent start failure: agent-a)"
    )

    report = await scheduler.schedule_pending(now=T0 + timedelta(seconds=61))
    assert [(p.replica_id, p.agent_id) for p in report.placed] == [(second, "agent-a")]


async def test_a_full_batch_is_followed_by_the_next_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_agent(sessions, "agent-1", gpus=0, cpu=64)
    await add_actor(sessions, "huge", resources={"cpu": 100})
    await add_actor(sessions, "tiny", resources={"cpu": 1})
    await add_pending(sessions, "huge", 3)  # never fit, queued first
    tiny = await add_pending(sessions, "tiny", 7, at=T0 + timedelta(seconds=1))

    report = await scheduler_of(sessions, max_replicas_per_pass=3).schedule_pending(now=T0)

    assert sorted(p.replica_id for p in report.placed) == sorted(tiny)
    assert len(report.unplaceable) == 3
    assert report.passes == 4  # 3 + 3 + 3 + 1


@pytest.fixture
async def second_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=4, max_overflow=4)
    yield engine
    await engine.dispose()


async def test_two_schedulers_racing_never_double_allocate(
    sessions: async_sessionmaker[AsyncSession], second_engine: AsyncEngine
) -> None:
    rng = random.Random(10)
    for i in range(6):
        await add_agent(sessions, f"agent-{i}", gpus=4, cpu=12)
    specs = {
        "whole-1": {"cpu": 1, "cuda.device": 1},
        "whole-2": {"cpu": 2, "cuda.device": 2},
        "half": {"cpu": 1, "cuda.shares": "0.5"},
        "quarter": {"cuda.shares": "0.25"},
        "cpu-only": {"cpu": 1},
    }
    for name, resources in specs.items():
        await add_actor(sessions, name, resources=resources)
    # small batches, so both schedulers hold pending replicas at once and contend for agents
    left = scheduler_of(sessions, max_replicas_per_pass=4)
    right = scheduler_of(
        async_sessionmaker(second_engine, expire_on_commit=False), max_replicas_per_pass=4
    )
    placed_total = 0
    for round_number in range(25):
        at = T0 + timedelta(seconds=round_number)
        for name in specs:
            await add_pending(sessions, name, rng.randint(0, 3), at=at)
        reports = await asyncio.gather(
            left.schedule_pending(now=at), right.schedule_pending(now=at)
        )
        placed = [p.replica_id for report in reports for p in report.placed]
        assert len(placed) == len(set(placed))  # no replica placed by both
        placed_total += len(placed)
        async with sessions.begin() as session:
            held = list(
                await session.scalars(
                    sa.select(ReplicaRow.id).where(ReplicaRow.status == ReplicaStatus.SCHEDULED)
                )
            )
            freed = rng.sample(held, k=len(held) // 4)
            await session.execute(
                sa.update(ReplicaRow)
                .where(ReplicaRow.id.in_(freed))
                .values(status=ReplicaStatus.TERMINATED)
            )
            assert list(await session.execute(OVER_ALLOCATED_DEVICES)) == []
            assert list(await session.execute(OVER_ALLOCATED_CPU)) == []
    assert placed_total > 100
