"""The scheduler's one transaction: read what a pass needs, let the caller decide, write it back.

Locks, in this order, so that two managers racing (even without the leader lock) can never
give the same device or the same CPU twice:

1. the pending replicas, oldest first (``created_at``, ``id``), ``FOR UPDATE SKIP LOCKED``:
   never waits; replicas another pass (or the replica planner) holds are left to it. With no
   pending replica the pass ends here, having locked nothing;
2. every ``alive`` agent row, ``FOR UPDATE`` in id order. Allocating on an agent needs its row
   lock, so passes that could touch the same agent run one after the other; the second one
   reads the replica rows only once it holds the lock, and so sees the first one's allocations
   (READ COMMITTED takes a fresh snapshot per statement).

Nothing else is locked and only step 2 waits, so a pass cannot deadlock with the
heartbeat (agent row, then that agent's placed replicas) or the replica planner (actor row,
then its replicas). Allocations are derived from the replica rows in ``ALLOCATED_REPLICA_STATUSES``
inside the transaction; ``agents.slots_used`` is written back for display only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.actor_spec import ActorStatus
from ai.backend.common.dto.agent import ALLOCATED_REPLICA_STATUSES, AgentStatus, ReplicaStatus

from ..models import ActorRow, AgentRow, ReplicaRow, SchedulerEventRow

UNSCHEDULABLE = "unschedulable"
START_FAILED = "start_failed"


@dataclass(frozen=True)
class AgentCapacity:
    """An alive agent as reported: totals with string amounts, device dicts, labels."""

    id: str
    slots_total: dict[str, Any]
    slots_used: dict[str, Any]
    devices: list[dict[str, Any]]
    labels: dict[str, Any]


@dataclass(frozen=True)
class HeldAllocation:
    """What a placed replica holds on its agent."""

    agent_id: str
    slots: dict[str, Any]
    device_ids: list[str]


@dataclass(frozen=True)
class PendingReplica:
    id: str
    actor_name: str
    created_at: datetime


@dataclass(frozen=True)
class SchedulingSnapshot:
    """Everything one pass decides on, read under the locks of the module docstring."""

    agents: list[AgentCapacity]
    allocations: list[HeldAllocation]
    pending: list[PendingReplica]
    actor_specs: dict[str, dict[str, Any]]
    # (actor name, agent id) pairs with a start failure within the backoff
    failed_starts: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class ReplicaAssignment:
    replica_id: str
    actor_name: str
    agent_id: str
    slots: dict[str, str]
    device_ids: list[str]


@dataclass(frozen=True)
class UnplaceableReplica:
    replica_id: str
    actor_name: str
    message: str


@dataclass(frozen=True)
class SchedulingDecision:
    assignments: list[ReplicaAssignment] = field(default_factory=list)
    unplaceable: list[UnplaceableReplica] = field(default_factory=list)
    # every locked agent's used slots after the pass (string amounts)
    slots_used: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedulingOutcome:
    decision: SchedulingDecision
    pending_seen: int
    events_written: int
    # the last replica of the batch: where the next batch starts (keyset pagination)
    last_pending: PendingReplica | None = None


Decide = Callable[[SchedulingSnapshot], SchedulingDecision]

_PLACE = sa.text(
    """
    UPDATE replicas AS r
    SET status = :scheduled, agent_id = v.agent_id, slots = v.slots::jsonb,
        device_ids = v.device_ids::jsonb, status_info = NULL, updated_at = :now
    FROM unnest(CAST(:ids AS text[]), CAST(:agent_ids AS text[]), CAST(:slots AS text[]),
                CAST(:device_ids AS text[])) AS v(id, agent_id, slots, device_ids)
    WHERE r.id = v.id AND r.status = :pending
    """
)
_EXPLAIN = sa.text(
    """
    UPDATE replicas AS r SET status_info = v.message, updated_at = :now
    FROM unnest(CAST(:ids AS text[]), CAST(:messages AS text[])) AS v(id, message)
    WHERE r.id = v.id AND r.status = :pending AND r.status_info IS DISTINCT FROM v.message
    """
)
# one event per (actor, message), unless the same one was written within the quiet interval
_RECORD_UNSCHEDULABLE = sa.text(
    """
    INSERT INTO scheduler_events (actor_name, kind, message, replica_id, at)
    SELECT v.actor_name, CAST(:kind AS varchar), v.message, v.replica_id, :now
    FROM unnest(CAST(:actor_names AS text[]), CAST(:messages AS text[]),
                CAST(:replica_ids AS text[])) AS v(actor_name, message, replica_id)
    WHERE NOT EXISTS (
        SELECT 1 FROM scheduler_events AS e
        WHERE e.actor_name = v.actor_name AND e.kind = CAST(:kind AS varchar)
          AND e.message = v.message AND e.at > :since
    )
    """
)
_WRITE_SLOTS_USED = sa.text(
    """
    UPDATE agents AS a SET slots_used = v.slots_used::jsonb
    FROM unnest(CAST(:ids AS text[]), CAST(:slots_used AS text[])) AS v(id, slots_used)
    WHERE a.id = v.id AND a.slots_used IS DISTINCT FROM v.slots_used::jsonb
    """
)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class SchedulingRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def run_pass(
        self,
        decide: Decide,
        *,
        now: datetime,
        max_replicas: int,
        start_failure_backoff: timedelta,
        event_quiet_interval: timedelta,
        after: PendingReplica | None = None,
    ) -> SchedulingOutcome:
        """One transaction: lock and read a :class:`SchedulingSnapshot` of the first
        ``max_replicas`` pending replicas (queued after ``after`` when given), call ``decide``
        (pure, synchronous) on it, write its :class:`SchedulingDecision`, commit."""
        async with self._sessions.begin() as session:
            pending = await self._lock_pending(session, max_replicas, after)
            if not pending:
                return SchedulingOutcome(SchedulingDecision(), 0, 0)
            agents = await self._lock_alive_agents(session)
            snapshot = SchedulingSnapshot(
                agents=agents,
                allocations=await self._allocations(session, [a.id for a in agents]),
                pending=pending,
                actor_specs=await self._actor_specs(session, {r.actor_name for r in pending}),
                failed_starts=await self._failed_starts(session, now - start_failure_backoff),
            )
            decision = decide(snapshot)
            await self._write_assignments(session, decision.assignments, now)
            events = await self._write_unplaceable(
                session, decision.unplaceable, now, now - event_quiet_interval
            )
            await self._write_slots_used(session, agents, decision.slots_used)
        return SchedulingOutcome(decision, len(pending), events, pending[-1])

    async def _lock_pending(
        self, session: AsyncSession, limit: int, after: PendingReplica | None
    ) -> list[PendingReplica]:
        query = (
            sa.select(ReplicaRow.id, ReplicaRow.actor_name, ReplicaRow.created_at)
            .join(ActorRow, ActorRow.name == ReplicaRow.actor_name)
            .where(
                ReplicaRow.status == ReplicaStatus.PENDING,
                ActorRow.status == ActorStatus.ACTIVE,
            )
            .order_by(ReplicaRow.created_at, ReplicaRow.id)
            .limit(limit)
            .with_for_update(of=ReplicaRow, skip_locked=True)
        )
        if after is not None:
            query = query.where(
                sa.tuple_(ReplicaRow.created_at, ReplicaRow.id)
                > sa.tuple_(sa.literal(after.created_at), sa.literal(after.id))
            )
        rows = await session.execute(query)
        return [
            PendingReplica(id=row["id"], actor_name=row["actor_name"], created_at=row["created_at"])
            for row in rows.mappings()
        ]

    async def _lock_alive_agents(self, session: AsyncSession) -> list[AgentCapacity]:
        rows = await session.execute(
            sa.select(
                AgentRow.id,
                AgentRow.slots_total,
                AgentRow.slots_used,
                AgentRow.devices,
                AgentRow.labels,
            )
            .where(AgentRow.status == AgentStatus.ALIVE)
            .order_by(AgentRow.id)
            .with_for_update()
        )
        return [
            AgentCapacity(
                id=row["id"],
                slots_total=row["slots_total"],
                slots_used=row["slots_used"],
                devices=row["devices"],
                labels=row["labels"],
            )
            for row in rows.mappings()
        ]

    async def _allocations(
        self, session: AsyncSession, agent_ids: list[str]
    ) -> list[HeldAllocation]:
        if not agent_ids:
            return []
        rows = await session.execute(
            sa.select(ReplicaRow.agent_id, ReplicaRow.slots, ReplicaRow.device_ids).where(
                ReplicaRow.agent_id.in_(agent_ids),
                ReplicaRow.status.in_(ALLOCATED_REPLICA_STATUSES),
            )
        )
        return [
            HeldAllocation(
                agent_id=row["agent_id"], slots=row["slots"], device_ids=row["device_ids"]
            )
            for row in rows.mappings()
        ]

    async def _actor_specs(
        self, session: AsyncSession, names: set[str]
    ) -> dict[str, dict[str, Any]]:
        rows = await session.execute(
            sa.select(ActorRow.name, ActorRow.spec).where(ActorRow.name.in_(names))
        )
        return {row["name"]: row["spec"] for row in rows.mappings()}

    async def _failed_starts(
        self, session: AsyncSession, since: datetime
    ) -> frozenset[tuple[str, str]]:
        rows = await session.execute(
            sa.select(SchedulerEventRow.actor_name, SchedulerEventRow.agent_id)
            .where(
                SchedulerEventRow.kind == START_FAILED,
                SchedulerEventRow.at > since,
                SchedulerEventRow.agent_id.is_not(None),
            )
            .distinct()
        )
        return frozenset((row["actor_name"], row["agent_id"]) for row in rows.mappings())

    async def _write_assignments(
        self, session: AsyncSession, assignments: list[ReplicaAssignment], now: datetime
    ) -> None:
        if not assignments:
            return
        await session.execute(
            _PLACE,
            {
                "ids": [a.replica_id for a in assignments],
                "agent_ids": [a.agent_id for a in assignments],
                "slots": [_json(a.slots) for a in assignments],
                "device_ids": [_json(a.device_ids) for a in assignments],
                "scheduled": ReplicaStatus.SCHEDULED.value,
                "pending": ReplicaStatus.PENDING.value,
                "now": now,
            },
        )

    async def _write_unplaceable(
        self,
        session: AsyncSession,
        unplaceable: list[UnplaceableReplica],
        now: datetime,
        quiet_since: datetime,
    ) -> int:
        """Each replica's ``status_info`` says why it waits; one event per actor and reason."""
        if not unplaceable:
            return 0
        await session.execute(
            _EXPLAIN,
            {
                "ids": [u.replica_id for u in unplaceable],
                "messages": [u.message for u in unplaceable],
                "pending": ReplicaStatus.PENDING.value,
                "now": now,
            },
        )
        first: dict[tuple[str, str], UnplaceableReplica] = {}
        for item in unplaceable:
            first.setdefault((item.actor_name, item.message), item)
        written = await session.execute(
            _RECORD_UNSCHEDULABLE,
            {
                "actor_names": [u.actor_name for u in first.values()],
                "messages": [u.message for u in first.values()],
                "replica_ids": [u.replica_id for u in first.values()],
                "kind": UNSCHEDULABLE,
                "now": now,
                "since": quiet_since,
            },
        )
        return int(getattr(written, "rowcount", 0) or 0)

    async def _write_slots_used(
        self,
        session: AsyncSession,
        agents: list[AgentCapacity],
        slots_used: Mapping[str, dict[str, str]],
    ) -> None:
        changed = [a.id for a in agents if a.id in slots_used and a.slots_used != slots_used[a.id]]
        if not changed:
            return
        await session.execute(
            _WRITE_SLOTS_USED,
            {"ids": changed, "slots_used": [_json(slots_used[i]) for i in changed]},
        )
