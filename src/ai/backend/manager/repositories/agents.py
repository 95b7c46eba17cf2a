"""Agents: heartbeats (with the replica states and runtime hellos they carry), listing, and the
lost-agent sweep. Each public method is one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
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
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.types.slots import ResourceSlot

from ..errors import AgentKeyMismatch, AgentNotFound
from ..models import ActorRow, AgentRow, ModelRow, ReplicaRow, SchedulerEventRow
from .actors import replica_info
from .events import record_event

MODEL_CONFLICT_QUIET = timedelta(minutes=10)
MODEL_NAME_MAX, MODEL_VERSION_MAX = 128, 64  # the registry's columns

log = BraceStyleAdapter(logging.getLogger(__name__))


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


def _holding_slots(agent_id: str) -> sa.Select[ReplicaRow]:
    """The agent's replicas that hold slots on it, oldest first."""
    return (
        sa.select(ReplicaRow)
        .where(
            ReplicaRow.agent_id == agent_id,
            ReplicaRow.status.in_(ALLOCATED_REPLICA_STATUSES),
        )
        .order_by(ReplicaRow.created_at, ReplicaRow.id)
    )


def _tracked_on(agent_id: str) -> sa.Select[ReplicaRow]:
    """What a heartbeat folds its reports into: the replicas holding slots on the agent, and
    those marked lost with it (which may still run if the agent comes back)."""
    return (
        sa.select(ReplicaRow)
        .where(
            ReplicaRow.agent_id == agent_id,
            ReplicaRow.status.in_(ALLOCATED_REPLICA_STATUSES | {ReplicaStatus.LOST}),
        )
        .order_by(ReplicaRow.created_at, ReplicaRow.id)
    )


async def _desired(session: AsyncSession, rows: list[ReplicaRow]) -> list[DesiredReplica]:
    """The replicas as the agent runs them, with their actors' specs. A stored spec that no
    longer validates is skipped (and logged), never an error for the whole heartbeat."""
    if not rows:
        return []
    names = {row.actor_name for row in rows}
    actors = await session.scalars(sa.select(ActorRow).where(ActorRow.name.in_(names)))
    specs = {actor.name: actor.spec for actor in actors}
    desired = []
    for row in rows:
        if row.actor_name not in specs:
            continue
        try:
            spec = ActorSpec.model_validate(specs[row.actor_name], context=SYSTEM_CONTEXT)
        except ValidationError as e:
            log.error(
                "actor {}: stored spec is invalid, replica {} skipped: {}",
                row.actor_name,
                row.id,
                e,
            )
            continue
        desired.append(
            DesiredReplica.model_validate(
                {
                    "replica_id": row.id,
                    "actor_name": row.actor_name,
                    "generation": row.generation,
                    "spec": spec,
                    "slots": row.slots,
                    "device_ids": row.device_ids,
                },
                context=SYSTEM_CONTEXT,  # the crew's replicas are among them
            )
        )
    return desired


def _is_stale(agent: AgentRow, beat: AgentHeartbeat) -> bool:
    """A heartbeat of the same agent process not newer than the last one applied."""
    return beat.boot_id is not None and beat.boot_id == agent.boot_id and beat.seq <= agent.last_seq


@dataclass(frozen=True)
class LostAgent:
    agent_id: str
    replica_ids: list[str]


@dataclass(frozen=True)
class ReportOutcome:
    failed: bool = False  # the agent gave up starting it
    now_running: bool = False  # it has just become running (its runtime's hello is fresh)


def _apply_report(row: ReplicaRow, report: ReplicaReport | None, now: datetime) -> ReportOutcome:
    """Fold an agent's report into a replica row it holds.

    A replica's row keeps counting its slots for as long as its agent reports its processes:
    a ``lost`` replica whose agent comes back becomes ``terminating`` (it is no longer wanted;
    the agent drains it) until the agent stops reporting it."""
    if row.status is ReplicaStatus.LOST:
        if report is not None:
            row.status = ReplicaStatus.TERMINATING
            row.status_info = "its agent came back after it was replaced: draining"
            row.updated_at = now
        return ReportOutcome()
    if row.status is ReplicaStatus.TERMINATING:
        if report is None:  # drained and gone
            row.status = ReplicaStatus.TERMINATED
            row.updated_at = now
        return ReportOutcome()
    if report is None or row.status not in ACTIVE_REPLICA_STATUSES:
        return ReportOutcome()  # not started yet (it is in the reply), or no longer tracked
    before = (row.status, row.restarts, row.status_info)
    if report.status is ReplicaStatus.FAILED:  # reported once its processes are gone
        row.status = ReplicaStatus.FAILED
    elif report.status in (ReplicaStatus.STARTING, ReplicaStatus.RUNNING):
        row.status = report.status
    row.restarts = report.restarts
    row.status_info = report.status_info
    if (row.status, row.restarts, row.status_info) != before:
        row.updated_at = now
    return ReportOutcome(
        failed=row.status is ReplicaStatus.FAILED and before[0] is not ReplicaStatus.FAILED,
        now_running=row.status is ReplicaStatus.RUNNING and before[0] is not ReplicaStatus.RUNNING,
    )


async def _register_models(
    session: AsyncSession, actor_name: str, report: ReplicaReport, now: datetime
) -> None:
    """Models announced in a runtime's hello belong to the first actor that announced them
    (called when a replica starts running, not on every heartbeat)."""
    if report.runtime is None:
        return
    for model in sorted(report.runtime.models, key=lambda m: (m.name, m.version)):
        if len(model.name) > MODEL_NAME_MAX or len(model.version) > MODEL_VERSION_MAX:
            record_event(
                session,
                actor_name=actor_name,
                kind="model_invalid",
                message=(
                    f"a model name or version is too long (at most {MODEL_NAME_MAX} and"
                    f" {MODEL_VERSION_MAX} characters); {model.name[:40]!r} ignored"
                ),
                replica_id=report.replica_id,
                at=now,
            )
            continue
        metadata: dict[str, Any] = {"inputs": model.inputs, "outputs": model.outputs}
        insert = pg_insert(ModelRow).values(
            name=model.name, version=model.version, actor_name=actor_name, model_metadata=metadata
        )
        await session.execute(insert.on_conflict_do_nothing())
        row = await session.get(ModelRow, (model.name, model.version))
        if row is None or row.actor_name == actor_name:
            if row is not None and row.model_metadata != metadata:
                row.model_metadata = metadata
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

    async def heartbeat(
        self, beat: AgentHeartbeat, *, access_key: str | None, now: datetime
    ) -> list[DesiredReplica]:
        """Record the agent's state and return the replicas it should run now.

        ``access_key``: the agent keypair that signed it; the first one binds the agent id,
        and another agent key is refused (an admin's heartbeat, ``None``, is not bound).
        ``last_heartbeat`` is the database's clock, the same clock the lost-agent sweep reads.
        """
        async with self._sessions.begin() as session:
            await session.execute(
                pg_insert(AgentRow)
                .values(
                    id=beat.agent_id,
                    addr=beat.addr,
                    status=AgentStatus.ALIVE,
                    version=beat.version,
                    access_key=access_key,
                )
                .on_conflict_do_nothing()
            )
            agent = await session.get(AgentRow, beat.agent_id, with_for_update=True)
            assert agent is not None
            if access_key is not None:
                if agent.access_key is None:
                    agent.access_key = access_key
                elif agent.access_key != access_key:
                    raise AgentKeyMismatch(
                        f"agent_id: agent {beat.agent_id!r} heartbeats with another keypair"
                    )
            if _is_stale(agent, beat):  # before anything changes: a late copy says nothing new
                log.info(
                    "agent {}: heartbeat {} overtaken by a newer one; ignored",
                    beat.agent_id,
                    beat.seq,
                )
                rows = list(await session.scalars(_tracked_on(beat.agent_id)))
                return await _desired(
                    session, [r for r in rows if r.status in ACTIVE_REPLICA_STATUSES]
                )
            agent.addr = beat.addr
            agent.version = beat.version
            agent.status = AgentStatus.ALIVE
            agent.slots_total = beat.slots_total.to_json()
            agent.devices = [d.model_dump(mode="json") for d in beat.devices]
            agent.labels = dict(beat.labels)
            agent.last_heartbeat = sa.func.now()
            rows = list(
                await session.scalars(_tracked_on(beat.agent_id).with_for_update(key_share=True))
            )
            agent.boot_id, agent.last_seq = beat.boot_id, beat.seq
            reports = {report.replica_id: report for report in beat.replicas}
            for row in rows:
                report = reports.get(row.id)
                outcome = _apply_report(row, report, now)
                if outcome.failed:
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
                if outcome.now_running and report is not None:
                    await _register_models(session, row.actor_name, report, now)
            wanted = [row for row in rows if row.status in ACTIVE_REPLICA_STATUSES]
            return await _desired(session, wanted)

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
            replicas = await session.scalars(_holding_slots(agent_id))
            return agent_info(row, list(replicas))

    async def ping(self) -> None:
        """Raise unless the database answers."""
        async with self._sessions() as session:
            await session.execute(sa.text("SELECT 1"))

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

    async def mark_lost(self, *, timeout: timedelta) -> list[LostAgent]:
        """Agents silent for ``timeout`` by the database's clock become ``lost``; the replicas
        they held become ``lost`` too (the planner replaces them elsewhere)."""
        async with self._sessions.begin() as session:
            db_now = await session.scalar(sa.select(sa.func.now()))
            assert db_now is not None
            agents = list(
                await session.scalars(
                    sa.select(AgentRow)
                    .where(
                        AgentRow.status == AgentStatus.ALIVE,
                        AgentRow.last_heartbeat < db_now - timeout,
                    )
                    .order_by(AgentRow.id)
                    .with_for_update(skip_locked=True)
                )
            )
            lost: list[LostAgent] = []
            for agent in agents:
                agent.status = AgentStatus.LOST
                replicas = list(await session.scalars(_holding_slots(agent.id).with_for_update()))
                silent = int((db_now - agent.last_heartbeat).total_seconds())
                for replica in replicas:
                    replica.status = ReplicaStatus.LOST
                    replica.status_info = f"agent {agent.id} lost (silent for {silent} s)"
                    replica.updated_at = db_now
                    record_event(
                        session,
                        actor_name=replica.actor_name,
                        kind="replica_lost",
                        message=f"replica {replica.id} lost with agent {agent.id}; replacing it",
                        agent_id=agent.id,
                        replica_id=replica.id,
                        at=db_now,
                    )
                agent.slots_used = {}
                lost.append(LostAgent(agent.id, [r.id for r in replicas]))
            return lost
