"""The autoscaler's view of actors: what it may scale, and writing its decisions.

A decision is written only if the actor is still as the autoscaler read it (same desired count,
still unpinned, same generation, still active): a ``scale``, an apply or a delete that happened
in between wins, and the next poll decides again from the new state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.actor_spec import ActorSpec, ActorStatus, ScalingPolicy
from ai.backend.common.dto.base import SYSTEM_CONTEXT
from ai.backend.common.log import BraceStyleAdapter

from ..models import ActorRow
from .events import record_event

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


@dataclass(frozen=True, slots=True)
class ScalableActor:
    """An active, unpinned actor as the autoscaler read it, with the autoscaler's memory."""

    name: str
    generation: int
    policy: ScalingPolicy
    desired_replicas: int
    scaled_up_at: datetime | None
    scaled_down_at: datetime | None
    idle_since: datetime | None


@dataclass(frozen=True, slots=True)
class ScalingUpdate:
    """What the autoscaler writes: the count, its memory, and the event of a change."""

    desired_replicas: int
    scaled_up_at: datetime | None
    scaled_down_at: datetime | None
    idle_since: datetime | None
    event_kind: str | None = None
    event_message: str = ""


class AutoscalingRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def scalable_actors(self) -> list[ScalableActor]:
        """Active actors whose count is not pinned by ``scale``, by name (an actor whose stored
        spec no longer validates is skipped and logged)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                sa.select(ActorRow)
                .where(ActorRow.status == ActorStatus.ACTIVE, ActorRow.pinned_replicas.is_(None))
                .order_by(ActorRow.name)
            )
            actors = []
            for row in rows:
                try:
                    spec = ActorSpec.model_validate(row.spec, context=SYSTEM_CONTEXT)
                except ValidationError as e:
                    log.warning("actor {}: stored spec is invalid, not autoscaled: {}", row.name, e)
                    continue
                actors.append(
                    ScalableActor(
                        name=row.name,
                        generation=row.generation,
                        policy=spec.scaling,
                        desired_replicas=row.desired_replicas,
                        scaled_up_at=row.scaled_up_at,
                        scaled_down_at=row.scaled_down_at,
                        idle_since=row.idle_since,
                    )
                )
            return actors

    async def record(self, actor: ScalableActor, update: ScalingUpdate, *, now: datetime) -> bool:
        """Store the new count and memory, and the update's ``scheduler_events`` row, in one
        transaction; nothing when the actor changed since ``actor`` was read (a concurrent
        ``scale``, apply or delete wins). Returns whether it was stored."""
        values: dict[str, object] = {
            "scaled_up_at": update.scaled_up_at,
            "scaled_down_at": update.scaled_down_at,
            "idle_since": update.idle_since,
        }
        if update.desired_replicas != actor.desired_replicas:
            values |= {"desired_replicas": update.desired_replicas, "updated_at": now}
        async with self._sessions.begin() as session:
            result = await session.execute(
                sa.update(ActorRow)
                .where(
                    ActorRow.name == actor.name,
                    ActorRow.status == ActorStatus.ACTIVE,
                    ActorRow.pinned_replicas.is_(None),
                    ActorRow.desired_replicas == actor.desired_replicas,
                    ActorRow.generation == actor.generation,
                )
                .values(values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if update.event_kind is not None:
                record_event(
                    session,
                    actor_name=actor.name,
                    kind=update.event_kind,
                    message=update.event_message,
                    at=now,
                )
            return True
