"""Heartbeats against PostgreSQL: reports folded into replica rows, slots held while processes
may run, the agent id bound to its keypair, the lost-agent sweep on the database's clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.agent import AgentHeartbeat, ReplicaStatus
from ai.backend.manager.errors import AgentKeyMismatch
from ai.backend.manager.models import AgentRow, ModelRow, ReplicaRow, SchedulerEventRow
from ai.backend.manager.repositories.actors import ActorRepository
from ai.backend.manager.repositories.agents import AgentRepository

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _beat(*replicas: tuple[str, str], seq: int = 0, boot_id: str | None = None) -> AgentHeartbeat:
    return AgentHeartbeat.model_validate(
        {
            "seq": seq,
            "boot_id": boot_id,
            "agent_id": "node-1",
            "addr": "http://127.0.0.1:6001",
            "version": "0.1.0",
            "slots_total": {"cpu": 4},
            "replicas": [
                {"replica_id": rid, "actor_name": "doubler", "generation": 1, "status": status}
                for rid, status in replicas
            ],
        }
    )


@pytest.fixture
async def placed(db_engine: AsyncEngine) -> AgentRepository:
    """Agent node-1 (bound to AKIAONE) holding replica r1 of doubler, running."""
    spec = {"name": "doubler", "handler": "examples.pipeline:double"}
    await ActorRepository(_sessions(db_engine)).apply(ActorSpec.model_validate(spec), now=NOW)
    agents = AgentRepository(_sessions(db_engine))
    assert await agents.heartbeat(_beat(), access_key="AKIAONE", now=NOW) == []
    async with _sessions(db_engine).begin() as session:
        session.add(
            ReplicaRow(
                id="r1",
                actor_name="doubler",
                agent_id="node-1",
                status=ReplicaStatus.SCHEDULED,
                slots={"cpu": "1"},
                device_ids=[],
                generation=1,
            )
        )
    return agents


async def _row(engine: AsyncEngine, replica_id: str) -> dict[str, Any]:
    async with _sessions(engine)() as session:
        row = await session.get(ReplicaRow, replica_id)
        assert row is not None
        return {"status": row.status, "restarts": row.restarts, "info": row.status_info}


async def test_reports_move_a_replica_along_and_the_reply_lists_it(
    placed: AgentRepository, db_engine: AsyncEngine
) -> None:
    [desired] = await placed.heartbeat(_beat(), access_key="AKIAONE", now=NOW)
    assert (desired.replica_id, desired.spec.name, desired.slots.to_json()) == (
        "r1",
        "doubler",
        {"cpu": "1"},
    )
    await placed.heartbeat(_beat(("r1", "running")), access_key="AKIAONE", now=NOW)
    assert (await _row(db_engine, "r1"))["status"] is ReplicaStatus.RUNNING


async def test_another_agent_keypair_cannot_heartbeat_as_this_agent(
    placed: AgentRepository,
) -> None:
    with pytest.raises(AgentKeyMismatch) as raised:
        await placed.heartbeat(_beat(), access_key="AKIATWO", now=NOW)
    assert raised.value.message == "agent_id: agent 'node-1' heartbeats with another keypair"
    assert len(await placed.heartbeat(_beat(), access_key=None, now=NOW)) == 1  # an admin


async def test_a_lost_replica_whose_agent_comes_back_holds_its_slots_until_drained(
    placed: AgentRepository, db_engine: AsyncEngine
) -> None:
    await placed.heartbeat(_beat(("r1", "running")), access_key="AKIAONE", now=NOW)
    async with _sessions(db_engine).begin() as session:  # silent for a minute, by the DB clock
        await session.execute(
            sa.update(AgentRow).values(last_heartbeat=sa.func.now() - timedelta(minutes=1))
        )
    [lost] = await placed.mark_lost(timeout=timedelta(seconds=30))
    assert (lost.agent_id, lost.replica_ids) == ("node-1", ["r1"])
    assert (await _row(db_engine, "r1"))["status"] is ReplicaStatus.LOST
    assert await placed.mark_lost(timeout=timedelta(seconds=30)) == []

    # the agent was alive after all: the replica is not wanted, but it runs and holds slots
    reply = await placed.heartbeat(_beat(("r1", "running")), access_key="AKIAONE", now=NOW)
    assert reply == []
    assert await _row(db_engine, "r1") == {
        "status": ReplicaStatus.TERMINATING,
        "restarts": 0,
        "info": "its agent came back after it was replaced: draining",
    }
    agent = await placed.get("node-1")
    assert (agent.status, agent.slots_used.to_json()) == ("alive", {"cpu": "1"})
    await placed.heartbeat(_beat(), access_key="AKIAONE", now=NOW)  # drained: no longer reported
    assert (await _row(db_engine, "r1"))["status"] is ReplicaStatus.TERMINATED
    assert (await placed.get("node-1")).slots_used.to_json() == {}


async def test_a_heartbeat_overtaken_by_a_newer_one_changes_nothing(
    placed: AgentRepository, db_engine: AsyncEngine
) -> None:
    await placed.heartbeat(
        _beat(("r1", "running"), seq=1, boot_id="b1"), access_key="AKIAONE", now=NOW
    )
    async with _sessions(db_engine).begin() as session:  # the manager retires it
        await session.execute(sa.update(ReplicaRow).values(status=ReplicaStatus.TERMINATING))
    await placed.heartbeat(
        _beat(("r1", "terminating"), seq=3, boot_id="b1"), access_key="AKIAONE", now=NOW
    )
    # a retried request from before (seq 2, when the agent had not started r1 yet) lands late
    await placed.heartbeat(_beat(seq=2, boot_id="b1"), access_key="AKIAONE", now=NOW)
    assert (await _row(db_engine, "r1"))["status"] is ReplicaStatus.TERMINATING  # still draining
    # a restarted agent (another boot) starts counting again
    await placed.heartbeat(_beat(seq=1, boot_id="b2"), access_key="AKIAONE", now=NOW)
    assert (await _row(db_engine, "r1"))["status"] is ReplicaStatus.TERMINATED


async def test_a_model_name_longer_than_the_registry_takes_is_ignored_with_an_event(
    placed: AgentRepository, db_engine: AsyncEngine
) -> None:
    beat = _beat(("r1", "running")).model_dump(mode="json")
    beat["replicas"][0]["runtime"] = {
        "protocol": 1,
        "handler": "examples.models:app",
        "concurrency": 1,
        "models": [{"name": "m" * 200}, {"name": "fine", "version": "2"}],
    }
    await placed.heartbeat(AgentHeartbeat.model_validate(beat), access_key="AKIAONE", now=NOW)
    assert (await _row(db_engine, "r1"))["status"] is ReplicaStatus.RUNNING
    async with _sessions(db_engine)() as session:
        models = (await session.execute(sa.select(ModelRow.name, ModelRow.version))).all()
        events = list(
            await session.scalars(
                sa.select(SchedulerEventRow.message).where(
                    SchedulerEventRow.kind == "model_invalid"
                )
            )
        )
    assert [tuple(m) for m in models] == [("fine", "2")]
    assert events == [
        "a model name or version is too long (at most 128 and 64 characters);"
        f" {'m' * 40!r} ignored"
    ]
