"""``scheduler_events``: why something is pending and what the control plane decided."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ai.backend.common.dto.manager_api import SchedulerEventInfo

from ..models import SchedulerEventRow

RECENT_EVENTS = 20


def event_info(row: SchedulerEventRow) -> SchedulerEventInfo:
    return SchedulerEventInfo(
        id=row.id,
        actor_name=row.actor_name,
        kind=row.kind,
        message=row.message,
        agent_id=row.agent_id,
        replica_id=row.replica_id,
        at=row.at,
    )


def record_event(
    session: AsyncSession,
    *,
    actor_name: str,
    kind: str,
    message: str,
    agent_id: str | None = None,
    replica_id: str | None = None,
    at: datetime | None = None,
) -> None:
    """Add an event to the caller's transaction."""
    row = SchedulerEventRow(
        actor_name=actor_name,
        kind=kind,
        message=message,
        agent_id=agent_id,
        replica_id=replica_id,
    )
    if at is not None:
        row.at = at
    session.add(row)


async def recent_events(
    session: AsyncSession, actor_name: str, limit: int = RECENT_EVENTS
) -> list[SchedulerEventInfo]:
    """The newest events of an actor, oldest first."""
    rows = await session.scalars(
        sa.select(SchedulerEventRow)
        .where(SchedulerEventRow.actor_name == actor_name)
        .order_by(SchedulerEventRow.at.desc(), SchedulerEventRow.id.desc())
        .limit(limit)
    )
    return [event_info(row) for row in reversed(list(rows))]
