"""The replica planner against PostgreSQL: counts, rolling replacement, drains, history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.agent import ReplicaStatus
from ai.backend.manager.models import ActorRow, ReplicaRow
from ai.backend.manager.repositories.actors import ActorRepository
from ai.backend.manager.repositories.replicas import ReplicaPlanRepository
from ai.backend.manager.services.planning import ReplicaPlanner

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SPEC = {"name": "doubler", "handler": "examples.pipeline:double", "scaling": {"min_replicas": 2}}


def _sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _replicas(engine: AsyncEngine) -> list[tuple[int, ReplicaStatus]]:
    async with _sessions(engine)() as session:
        rows = await session.scalars(
            sa.select(ReplicaRow).order_by(ReplicaRow.generation, ReplicaRow.status)
        )
        return [(r.generation, r.status) for r in rows]


async def _set_status(engine: AsyncEngine, generation: int, status: ReplicaStatus, n: int) -> None:
    """``n`` replicas of ``generation`` that are not ``status`` yet become ``status``."""
    async with _sessions(engine).begin() as session:
        rows = list(
            await session.scalars(
                sa.select(ReplicaRow)
                .where(ReplicaRow.generation == generation, ReplicaRow.status != status)
                .order_by(ReplicaRow.id)
                .limit(n)
            )
        )
        for row in rows:
            row.status = status


async def test_a_new_generation_replaces_the_old_one_as_it_comes_up(db_engine: AsyncEngine) -> None:
    actors = ActorRepository(_sessions(db_engine))
    planner = ReplicaPlanRepository(_sessions(db_engine))
    await actors.apply(ActorSpec.model_validate(SPEC), now=NOW)
    result = await planner.plan("doubler", now=NOW)
    assert len(result.created) == 2
    assert await planner.plan("doubler", now=NOW) == type(result)("doubler")  # idempotent
    await _set_status(db_engine, 1, ReplicaStatus.RUNNING, 2)

    await actors.apply(ActorSpec.model_validate({**SPEC, "concurrency": 4}), now=NOW)
    await planner.plan("doubler", now=NOW)
    R, P, T = ReplicaStatus.RUNNING, ReplicaStatus.PENDING, ReplicaStatus.TERMINATING
    assert sorted(await _replicas(db_engine)) == sorted([(1, R), (1, R), (2, P), (2, P)])
    await _set_status(db_engine, 2, R, 1)
    await planner.plan("doubler", now=NOW)
    assert sorted(await _replicas(db_engine)) == sorted([(1, R), (1, T), (2, R), (2, P)])
    await _set_status(db_engine, 2, R, 1)
    await planner.plan("doubler", now=NOW)
    assert sorted(await _replicas(db_engine)) == sorted([(1, T), (1, T), (2, R), (2, R)])


async def test_scaling_down_retires_unplaced_replicas_first(db_engine: AsyncEngine) -> None:
    actors = ActorRepository(_sessions(db_engine))
    planner = ReplicaPlanRepository(_sessions(db_engine))
    await actors.apply(ActorSpec.model_validate(SPEC), now=NOW)
    await actors.scale("doubler", 3, now=NOW)
    await planner.plan("doubler", now=NOW)
    await _set_status(db_engine, 1, ReplicaStatus.RUNNING, 2)
    await actors.scale("doubler", 2, now=NOW)
    await planner.plan("doubler", now=NOW)
    R, T = ReplicaStatus.RUNNING, ReplicaStatus.TERMINATED
    assert sorted(await _replicas(db_engine)) == sorted([(1, R), (1, R), (1, T)])


async def test_a_deleted_actor_drains_then_goes_with_its_history(db_engine: AsyncEngine) -> None:
    actors = ActorRepository(_sessions(db_engine))
    planner = ReplicaPlanRepository(_sessions(db_engine))
    await actors.apply(ActorSpec.model_validate(SPEC), now=NOW)
    await planner.plan("doubler", now=NOW)
    await _set_status(db_engine, 1, ReplicaStatus.RUNNING, 1)
    await actors.mark_deleting("doubler", now=NOW)
    result = await planner.plan("doubler", now=NOW)
    assert (len(result.retired), result.removed_actor) == (2, False)
    assert sorted(await _replicas(db_engine)) == sorted(
        [(1, ReplicaStatus.TERMINATING), (1, ReplicaStatus.TERMINATED)]
    )
    await _set_status(db_engine, 1, ReplicaStatus.TERMINATED, 1)  # the agent reported it gone
    assert (await planner.plan("doubler", now=NOW)).removed_actor
    assert await planner.actor_names() == []
    assert await _replicas(db_engine) == []  # its rows went with it


async def test_history_is_pruned_by_age(db_engine: AsyncEngine) -> None:
    actors = ActorRepository(_sessions(db_engine))
    planner = ReplicaPlanRepository(_sessions(db_engine))
    await actors.apply(ActorSpec.model_validate(SPEC), now=NOW)
    await planner.plan("doubler", now=NOW)
    await _set_status(db_engine, 1, ReplicaStatus.LOST, 1)
    async with _sessions(db_engine).begin() as session:
        await session.execute(sa.update(ReplicaRow).values(updated_at=NOW))
    assert await planner.prune(
        now=NOW + timedelta(minutes=30),
        replicas_older_than=timedelta(hours=1),
        events_older_than=timedelta(days=1),
    ) == (0, 0)
    replicas, events = await planner.prune(
        now=NOW + timedelta(hours=2),
        replicas_older_than=timedelta(hours=1),
        events_older_than=timedelta(hours=1),
    )
    assert (replicas, events) == (1, 2)  # the lost replica; "created" and "replicas" events
    assert await _replicas(db_engine) == [(1, ReplicaStatus.PENDING)]


async def test_an_actor_that_cannot_be_planned_leaves_the_others_alone(
    db_engine: AsyncEngine,
) -> None:
    actors = ActorRepository(_sessions(db_engine))
    planner = ReplicaPlanRepository(_sessions(db_engine))
    await actors.apply(ActorSpec.model_validate({**SPEC, "name": "broken"}), now=NOW)
    await actors.apply(ActorSpec.model_validate(SPEC), now=NOW)
    async with _sessions(db_engine).begin() as session:  # a spec that no longer validates
        await session.execute(
            sa.update(ActorRow).where(ActorRow.name == "broken").values(spec={"name": "broken"})
        )
    await ReplicaPlanner(planner).run(NOW)
    async with _sessions(db_engine)() as session:
        rows = (await session.execute(sa.select(ReplicaRow.actor_name))).all()
    assert sorted(r[0] for r in rows) == ["doubler", "doubler"]
