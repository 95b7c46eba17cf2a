"""Replica planning: turn an actor's wanted count and generation into replica rows.

One transaction per actor, under the actor row's lock:

* the current generation gets exactly ``target`` active replicas (new ones start ``pending``
  for the scheduler; extras retire, unplaced ones first);
* replicas of older generations retire as the new generation's replicas come up: as many old
  ones stay as the target minus the new ones already ``running`` (a rolling replacement that
  never drops below the target while the new replicas can be placed). Retiring means
  ``terminating``: the agent drains it (stop consuming, finish in-flight work, stop), so no
  envelope is lost; an unplaced one simply ends;
* an actor being deleted retires everything, and its row goes once no replica holds slots.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.actor_spec import ActorSpec, ActorStatus
from ai.backend.common.dto.agent import (
    ACTIVE_REPLICA_STATUSES,
    ALLOCATED_REPLICA_STATUSES,
    SYSTEM_CONTEXT,
    ReplicaStatus,
)

from ..models import ActorRow, ReplicaRow, SchedulerEventRow
from .events import record_event

ENDED_REPLICA_STATUSES = (ReplicaStatus.TERMINATED, ReplicaStatus.FAILED, ReplicaStatus.LOST)

# which replicas retire first: the least far along, then the newest
_RETIRE_ORDER = {
    ReplicaStatus.PENDING: 0,
    ReplicaStatus.SCHEDULED: 1,
    ReplicaStatus.STARTING: 2,
    ReplicaStatus.RUNNING: 3,
}


@dataclass
class PlanResult:
    actor_name: str
    created: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    removed_actor: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.retired or self.removed_actor)


def new_replica_id(actor_name: str) -> str:
    return f"{actor_name}-{secrets.token_hex(4)}"


def _retire(row: ReplicaRow, now: datetime, reason: str) -> None:
    if row.status in (ReplicaStatus.PENDING,):
        row.status = ReplicaStatus.TERMINATED  # never placed: nothing to drain
    else:
        row.status = ReplicaStatus.TERMINATING
    row.status_info = reason
    row.updated_at = now


def _retire_order(row: ReplicaRow) -> tuple[int, float]:
    return (_RETIRE_ORDER.get(row.status, 9), -row.created_at.timestamp())


class ReplicaPlanRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def prune(
        self, *, now: datetime, replicas_older_than: timedelta, events_older_than: timedelta
    ) -> tuple[int, int]:
        """Forget replicas that ended (terminated, failed, lost) and scheduler events older than
        the given ages; returns how many of each went."""
        async with self._sessions.begin() as session:
            replicas = await session.execute(
                sa.delete(ReplicaRow).where(
                    ReplicaRow.status.in_(ENDED_REPLICA_STATUSES),
                    ReplicaRow.updated_at < now - replicas_older_than,
                )
            )
            events = await session.execute(
                sa.delete(SchedulerEventRow).where(SchedulerEventRow.at < now - events_older_than)
            )
        return replicas.rowcount, events.rowcount  # type: ignore[attr-defined]

    async def actor_names(self) -> list[str]:
        async with self._sessions() as session:
            return list(await session.scalars(sa.select(ActorRow.name).order_by(ActorRow.name)))

    async def plan(self, name: str, *, now: datetime) -> PlanResult:
        result = PlanResult(name)
        async with self._sessions.begin() as session:
            # FOR NO KEY UPDATE: a heartbeat registering this actor's models (a foreign key to
            # it, which takes FOR KEY SHARE) is not blocked by it, nor is it blocked by one
            actor = await session.get(ActorRow, name, with_for_update={"key_share": True})
            if actor is None:
                return result
            replicas = list(
                await session.scalars(
                    sa.select(ReplicaRow)
                    .where(
                        ReplicaRow.actor_name == name,
                        ReplicaRow.status.in_(ALLOCATED_REPLICA_STATUSES | {ReplicaStatus.PENDING}),
                    )
                    .order_by(ReplicaRow.created_at, ReplicaRow.id)  # the heartbeat's lock order
                    .with_for_update()
                )
            )
            if actor.status is ActorStatus.DELETING:
                for row in replicas:
                    if row.status is not ReplicaStatus.TERMINATING:
                        _retire(row, now, "actor deleted")
                        result.retired.append(row.id)
                holding = [r for r in replicas if r.status in ALLOCATED_REPLICA_STATUSES]
                if not holding:
                    await session.delete(actor)
                    result.removed_actor = True
                return result
            target = (
                actor.pinned_replicas
                if actor.pinned_replicas is not None
                else actor.desired_replicas
            )
            live = ACTIVE_REPLICA_STATUSES | {ReplicaStatus.PENDING}
            current = [r for r in replicas if r.generation == actor.generation and r.status in live]
            old = [r for r in replicas if r.generation != actor.generation and r.status in live]
            if len(current) < target:
                spec = ActorSpec.model_validate(actor.spec, context=SYSTEM_CONTEXT)
                for _ in range(target - len(current)):
                    replica_id = new_replica_id(name)
                    session.add(
                        ReplicaRow(
                            id=replica_id,
                            actor_name=name,
                            agent_id=None,
                            status=ReplicaStatus.PENDING,
                            slots=spec.resources.to_json(),
                            device_ids=[],
                            generation=actor.generation,
                            restarts=0,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    result.created.append(replica_id)
            elif len(current) > target:
                for row in sorted(current, key=_retire_order)[: len(current) - target]:
                    _retire(row, now, f"scaled to {target}")
                    result.retired.append(row.id)
            running_current = sum(1 for r in current if r.status is ReplicaStatus.RUNNING)
            keep_old = max(0, target - running_current)
            if len(old) > keep_old:
                for row in sorted(old, key=_retire_order)[: len(old) - keep_old]:
                    _retire(row, now, f"replaced by generation {actor.generation}")
                    result.retired.append(row.id)
            if result.created or result.retired:
                parts = []
                if result.created:
                    parts.append(f"{len(result.created)} new replica(s) pending")
                if result.retired:
                    parts.append(f"{len(result.retired)} retiring")
                record_event(
                    session,
                    actor_name=name,
                    kind="replicas",
                    message=f"target {target}: " + ", ".join(parts),
                    at=now,
                )
        return result
