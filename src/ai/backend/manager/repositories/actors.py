"""Actors and their replicas as users see them: apply, list, get, scale, delete.

Each public method is one transaction. An actor's row is locked (``FOR UPDATE``) by every write,
so that an apply, a scale, the autoscaler and the replica planner never interleave on it.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.actor_spec import ActorSpec, ActorStatus
from ai.backend.common.dto.agent import ReplicaStatus
from ai.backend.common.dto.manager_api import (
    ActorInfo,
    ActorSummary,
    ApplyResult,
    ReplicaInfo,
    spec_json,
)
from ai.backend.common.types.slots import ResourceSlot

from ..errors import ActorBeingDeleted, ActorNotFound, SystemActorProtected
from ..models import ActorRow, ReplicaRow
from .events import recent_events, record_event

SHOWN_REPLICA_STATUSES = (
    ReplicaStatus.PENDING,
    ReplicaStatus.SCHEDULED,
    ReplicaStatus.STARTING,
    ReplicaStatus.RUNNING,
    ReplicaStatus.TERMINATING,
    ReplicaStatus.FAILED,
    ReplicaStatus.LOST,
)


ENDED_SHOWN = frozenset({ReplicaStatus.FAILED, ReplicaStatus.LOST})
ENDED_SHOWN_LIMIT = 10  # `get` shows the most recent failed / lost replicas, not all of them


def replica_info(row: ReplicaRow) -> ReplicaInfo:
    return ReplicaInfo(
        id=row.id,
        actor_name=row.actor_name,
        agent_id=row.agent_id,
        status=row.status,
        status_info=row.status_info,
        slots=ResourceSlot.parse(row.slots),
        device_ids=list(row.device_ids),
        generation=row.generation,
        restarts=row.restarts,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _summary(row: ActorRow, running: int) -> ActorSummary:
    return ActorSummary(
        name=row.name,
        status=row.status,
        generation=row.generation,
        is_system=row.is_system,
        desired_replicas=row.desired_replicas,
        pinned_replicas=row.pinned_replicas,
        running_replicas=running,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _running_counts(session: AsyncSession, names: list[str] | None) -> dict[str, int]:
    query = (
        sa.select(ReplicaRow.actor_name, sa.func.count())
        .where(ReplicaRow.status == ReplicaStatus.RUNNING)
        .group_by(ReplicaRow.actor_name)
    )
    if names is not None:
        query = query.where(ReplicaRow.actor_name.in_(names))
    return {name: count for name, count in (await session.execute(query))}


async def _locked_actor(session: AsyncSession, name: str) -> ActorRow | None:
    """The actor's row, locked FOR NO KEY UPDATE (foreign-key checks of rows referring to it
    still pass)."""
    return await session.get(ActorRow, name, with_for_update={"key_share": True})


class ActorRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def apply(self, spec: ActorSpec, *, now: datetime, system: bool = False) -> ApplyResult:
        """Create the actor, or update it: a changed spec bumps ``generation`` (the planner then
        replaces the replicas) and unpins a ``scale``; an identical spec changes nothing."""
        stored = spec_json(spec)
        policy = spec.scaling
        async with self._sessions.begin() as session:
            inserted = await session.execute(
                pg_insert(ActorRow)
                .values(
                    name=spec.name,
                    spec=stored,
                    status=ActorStatus.ACTIVE,
                    generation=1,
                    is_system=system,
                    desired_replicas=policy.min_replicas,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing()
                .returning(ActorRow.name)
            )
            if inserted.scalar() is not None:  # created (a concurrent apply waits, then updates)
                record_event(
                    session, actor_name=spec.name, kind="created", message="actor created", at=now
                )
                return ApplyResult(name=spec.name, generation=1, created=True, changed=True)
            row = await _locked_actor(session, spec.name)
            if row is None:  # deleted between the two statements
                raise ActorBeingDeleted(f"name: actor {spec.name!r} was just deleted; retry")
            if row.is_system and not system:
                raise SystemActorProtected(f"name: actor {spec.name!r} belongs to the platform")
            if row.status is ActorStatus.DELETING:
                raise ActorBeingDeleted(f"name: actor {spec.name!r} is being deleted; retry later")
            if row.spec == stored:
                return ApplyResult(
                    name=row.name, generation=row.generation, created=False, changed=False
                )
            row.spec = stored
            row.generation += 1
            row.pinned_replicas = None
            row.desired_replicas = max(
                policy.min_replicas, min(policy.max_replicas, row.desired_replicas)
            )
            row.updated_at = now
            record_event(
                session,
                actor_name=row.name,
                kind="updated",
                message=f"spec changed: generation {row.generation}, replicas are replaced",
                at=now,
            )
            return ApplyResult(
                name=row.name, generation=row.generation, created=False, changed=True
            )

    async def list_all(self) -> list[ActorSummary]:
        async with self._sessions() as session:
            rows = list(await session.scalars(sa.select(ActorRow).order_by(ActorRow.name)))
            running = await _running_counts(session, None)
            return [_summary(row, running.get(row.name, 0)) for row in rows]

    async def get(self, name: str) -> ActorInfo:
        async with self._sessions() as session:
            # One snapshot for the actor, its replicas and its events: a replica's reason and
            # the event that reported it are written together, so they are read together.
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            row = await session.get(ActorRow, name)
            if row is None:
                raise ActorNotFound(f"actor {name!r} not found")
            replicas = await session.scalars(
                sa.select(ReplicaRow)
                .where(
                    ReplicaRow.actor_name == name,
                    ReplicaRow.status.in_(SHOWN_REPLICA_STATUSES),
                )
                .order_by(ReplicaRow.created_at, ReplicaRow.id)
            )
            rows = list(replicas)
            ended = [r for r in rows if r.status in ENDED_SHOWN]
            recent_ended = {
                r.id for r in sorted(ended, key=lambda r: r.updated_at)[-ENDED_SHOWN_LIMIT:]
            }
            replica_infos = [
                replica_info(r) for r in rows if r.status not in ENDED_SHOWN or r.id in recent_ended
            ]
            running = sum(1 for r in replica_infos if r.status is ReplicaStatus.RUNNING)
            return ActorInfo(
                **_summary(row, running).model_dump(),
                spec=row.spec,
                replicas=replica_infos,
                events=await recent_events(session, name),
            )

    async def scale(self, name: str, pinned: int | None, *, now: datetime) -> ActorSummary:
        """Pin the replica count (``None``: back to the autoscaler). Never bumps generation."""
        async with self._sessions.begin() as session:
            row = await _locked_actor(session, name)
            if row is None:
                raise ActorNotFound(f"actor {name!r} not found")
            if row.status is ActorStatus.DELETING:
                raise ActorBeingDeleted(f"actor {name!r} is being deleted")
            if row.is_system:
                raise SystemActorProtected(f"actor {name!r} belongs to the platform")
            if row.pinned_replicas != pinned:
                row.pinned_replicas = pinned
                if pinned is not None:
                    row.desired_replicas = pinned
                row.updated_at = now
                message = (
                    f"pinned to {pinned} replicas by scale (autoscaling off)"
                    if pinned is not None
                    else "scale auto: the autoscaler decides again"
                )
                record_event(session, actor_name=name, kind="scale", message=message, at=now)
            running = await _running_counts(session, [name])
            return _summary(row, running.get(name, 0))

    async def mark_deleting(self, name: str, *, now: datetime) -> ActorSummary:
        """Start a drain: the planner retires every replica, then removes the actor."""
        async with self._sessions.begin() as session:
            row = await _locked_actor(session, name)
            if row is None:
                raise ActorNotFound(f"actor {name!r} not found")
            if row.is_system:
                raise SystemActorProtected(f"actor {name!r} belongs to the platform")
            if row.status is not ActorStatus.DELETING:
                row.status = ActorStatus.DELETING
                row.updated_at = now
                record_event(
                    session,
                    actor_name=name,
                    kind="deleting",
                    message="draining: replicas stop consuming, finish in-flight work, then stop",
                    at=now,
                )
            running = await _running_counts(session, [name])
            return _summary(row, running.get(name, 0))
