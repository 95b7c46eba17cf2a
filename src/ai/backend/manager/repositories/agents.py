"""Agents: heartbeats (with the replica states and runtime hellos they carry), listing, and the
lost-agent sweep. Each public method is one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.agent import (
    ACTIVE_REPLICA_STATUSES,
    ALLOCATED_REPLICA_STATUSES,
    SYSTEM_CONTEXT,
    AgentHeartbeat,
    AgentStatus,
    DesiredReplica,
    DeviceInfo,
    ReplicaReport,
    ReplicaStatus,
)
from ai.backend.common.dto.manager_api import AgentInfo
from ai.backend.common.types.slots import ResourceSlot

from ..errors import AgentNotFound
from ..models import ActorRow, AgentRow, ModelRow, ReplicaRow, SchedulerEventRow
from .actors import replica_info
from .events import record_event

MODEL_CONFLICT_QUIET = timedelta(minutes=10)


def agent_info(row: AgentRow, replicas: list[ReplicaRow]) -> AgentInfo:
    """``replicas``: the agent's replicas that hold slots; used slots are their sum."""
    used = ResourceSlot()
    for replica in replicas:
        used = used + ResourceSlot.parse(replica.slots)
    return AgentInfo(
        id=row.id,
        addr=row.addr,
        status=row.status,
        slots_total=ResourceSlot.parse(row.slots_total),
        slots_used=used,
        devices=[DeviceInfo.model_validate(d) for d in row.devices],
        labels=row.labels,
        version=row.version,
        first_contact=row.first_contact,
        last_heartbeat=row.last_heartbeat,
        replicas=[replica_info(r) for r in replicas],
    )


@dataclass(frozen=True)
class LostAgent:
    agent_id: str
    replica_ids: list[str]


def _apply_report(row: ReplicaRow, report: ReplicaReport | None, now: datetime) -> bool:
    """Fold an agent's report into a replica row it holds; True when the start failed."""
    if row.status is ReplicaStatus.TERMINATING:
        if report is None:  # drained and gone
            row.status = ReplicaStatus.TERMINATED
            row.updated_at = now
        return False
    if report is None or row.status not in ACTIVE_REPLICA_STATUSES:
        return False  # not started yet (it is in the reply), or no longer ours to track
    changed = (row.status, row.restarts, row.status_info) != (
        report.status,
        report.restarts,
        report.status_info,
    )
    if report.status is ReplicaStatus.FAILED:
        row.status = ReplicaStatus.FAILED
    elif report.status in (ReplicaStatus.STARTING, ReplicaStatus.RUNNING):
        row.status = report.status
    row.restarts = report.restarts
    row.status_info = report.status_info
    if changed:
        row.updated_at = now
    return report.status is ReplicaStatus.FAILED


async def _register_models(
    session: AsyncSession, actor_name: str, report: ReplicaReport, now: datetime
) -> None:
    """Models announced in a runtime's hello belong to the first actor that announced them."""
    if report.runtime is None:
        return
    for model in report.runtime.models:
        metadata: dict[str, Any] = {"inputs": model.inputs, "outputs": model.outputs}
        insert = pg_insert(ModelRow).values(
            name=model.name, version=model.version, actor_name=actor_name, model_metadata=metadata
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[ModelRow.name, ModelRow.version],
            set_={"metadata": insert.excluded.metadata},
            where=ModelRow.actor_name == insert.excluded.actor_name,
        ).returning(ModelRow.actor_name)
        owner = await session.scalar(upsert)
        if owner is not None:
            continue
        # the model belongs to another actor: say so, once in a while
        recent = await session.scalar(
            sa.select(sa.func.count())
            .select_from(SchedulerEventRow)
            .where(
                SchedulerEventRow.actor_name == actor_name,
                SchedulerEventRow.kind == "model_conflict",
                SchedulerEventRow.at > now - MODEL_CONFLICT_QUIET,
            )
        )
        if not recent:
            record_event(
                session,
                actor_name=actor_name,
                kind="model_conflict",
                message=(
                    f"model {model.name!r} version {model.version!r} belongs to another actor;"
                    " ignored"
                ),
                replica_id=report.replica_id,
                at=now,
            )


class AgentRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def heartbeat(self, beat: AgentHeartbeat, *, now: datetime) -> list[DesiredReplica]:
        """Record the agent's state and return the replicas it should run now."""
        async with self._sessions.begin() as session:
            agent = await session.get(AgentRow, beat.agent_id, with_for_update=True)
            if agent is None:
                agent = AgentRow(id=beat.agent_id, first_contact=now, slots_used={})
                session.add(agent)
            agent.addr = beat.addr
            agent.version = beat.version
            agent.status = AgentStatus.ALIVE
            agent.slots_total = beat.slots_total.to_json()
            agent.devices = [d.model_dump(mode="json") for d in beat.devices]
            agent.labels = dict(beat.labels)
            agent.last_heartbeat = now
            await session.flush()
            rows = list(
                await session.scalars(
                    sa.select(ReplicaRow)
                    .where(
                        ReplicaRow.agent_id == beat.agent_id,
                        ReplicaRow.status.in_(ALLOCATED_REPLICA_STATUSES),
                    )
                    .order_by(ReplicaRow.created_at, ReplicaRow.id)
                    .with_for_update()
                )
            )
            reports = {report.replica_id: report for report in beat.replicas}
            for row in rows:
                report = reports.get(row.id)
                if _apply_report(row, report, now):
                    record_event(
                        session,
                        actor_name=row.actor_name,
                        kind="start_failed",
                        message=(
                            f"replica {row.id} failed on agent {beat.agent_id}:"
                            f" {row.status_info or 'crashed repeatedly'}"
                        ),
                        agent_id=beat.agent_id,
                        replica_id=row.id,
                        at=now,
                    )
                if report is not None and row.status is ReplicaStatus.RUNNING:
                    await _register_models(session, row.actor_name, report, now)
            wanted = [row for row in rows if row.status in ACTIVE_REPLICA_STATUSES]
            specs: dict[str, dict[str, Any]] = {}
            if wanted:
                names = {row.actor_name for row in wanted}
                actors = await session.scalars(sa.select(ActorRow).where(ActorRow.name.in_(names)))
                specs = {actor.name: actor.spec for actor in actors}
            return [
                DesiredReplica.model_validate(
                    {
                        "replica_id": row.id,
                        "actor_name": row.actor_name,
                        "generation": row.generation,
                        "spec": ActorSpec.model_validate(
                            specs[row.actor_name], context=SYSTEM_CONTEXT
                        ),
                        "slots": row.slots,
                        "device_ids": row.device_ids,
                    },
                    context=SYSTEM_CONTEXT,
                )
                for row in wanted
                if row.actor_name in specs
            ]

    async def list_all(self) -> list[AgentInfo]:
        async with self._sessions() as session:
            rows = await session.scalars(sa.select(AgentRow).order_by(AgentRow.id))
            allocated = await session.scalars(
                sa.select(ReplicaRow)
                .where(ReplicaRow.status.in_(ALLOCATED_REPLICA_STATUSES))
                .order_by(ReplicaRow.created_at, ReplicaRow.id)
            )
            by_agent: dict[str, list[ReplicaRow]] = {}
            for replica in allocated:
                if replica.agent_id is not None:
                    by_agent.setdefault(replica.agent_id, []).append(replica)
            return [agent_info(row, by_agent.get(row.id, [])) for row in rows]

    async def get(self, agent_id: str) -> AgentInfo:
        async with self._sessions() as session:
            row = await session.get(AgentRow, agent_id)
            if row is None:
                raise AgentNotFound(f"agent {agent_id!r} not found")
            replicas = await session.scalars(
                sa.select(ReplicaRow)
                .where(
                    ReplicaRow.agent_id == agent_id,
                    ReplicaRow.status.in_(ALLOCATED_REPLICA_STATUSES),
                )
                .order_by(ReplicaRow.created_at, ReplicaRow.id)
            )
            return agent_info(row, list(replicas))

    async def addrs_with_news(self) -> list[str]:
        """Addresses of alive agents holding replicas they have not picked up yet (placed) or
        should stop (terminating)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                sa.select(AgentRow.addr)
                .where(
                    AgentRow.status == AgentStatus.ALIVE,
                    AgentRow.id.in_(
                        sa.select(ReplicaRow.agent_id).where(
                            ReplicaRow.status.in_(
                                [ReplicaStatus.SCHEDULED, ReplicaStatus.TERMINATING]
                            )
                        )
                    ),
                )
                .distinct()
            )
            return list(rows)

    async def mark_lost(self, *, now: datetime, timeout: timedelta) -> list[LostAgent]:
        """Agents silent for ``timeout`` become ``lost``; the replicas they held become ``lost``
        too (the planner replaces them elsewhere)."""
        async with self._sessions.begin() as session:
            agents = list(
                await session.scalars(
                    sa.select(AgentRow)
                    .where(
                        AgentRow.status == AgentStatus.ALIVE,
                        AgentRow.last_heartbeat < now - timeout,
                    )
                    .with_for_update(skip_locked=True)
                )
            )
            lost: list[LostAgent] = []
            for agent in agents:
                agent.status = AgentStatus.LOST
                replicas = list(
                    await session.scalars(
                        sa.select(ReplicaRow)
                        .where(
                            ReplicaRow.agent_id == agent.id,
                            ReplicaRow.status.in_(ALLOCATED_REPLICA_STATUSES),
                        )
                        .with_for_update()
                    )
                )
                silent = int((now - agent.last_heartbeat).total_seconds())
                for replica in replicas:
                    replica.status = ReplicaStatus.LOST
                    replica.status_info = f"agent {agent.id} lost (silent for {silent} s)"
                    replica.updated_at = now
                    record_event(
                        session,
                        actor_name=replica.actor_name,
                        kind="replica_lost",
                        message=f"replica {replica.id} lost with agent {agent.id}; replacing it",
                        agent_id=agent.id,
                        replica_id=replica.id,
                        at=now,
                    )
                agent.slots_used = {}
                lost.append(LostAgent(agent.id, [r.id for r in replicas]))
            return lost
