"""Counts for the manager's metrics, read in one short transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.agent import ALLOCATED_REPLICA_STATUSES, AgentStatus, ReplicaStatus

from ..models import ActorRow, AgentRow, ReplicaRow


@dataclass
class ControlPlaneStats:
    replicas: dict[tuple[str, str], int] = field(default_factory=dict)  # (actor, status) → n
    desired: dict[str, int] = field(default_factory=dict)
    agents: dict[str, int] = field(default_factory=dict)  # status → n
    slots_total: dict[str, Decimal] = field(default_factory=dict)  # over alive agents
    slots_used: dict[str, Decimal] = field(default_factory=dict)


def _add_up(totals: dict[str, Decimal], slot_maps: Iterable[dict[str, Any]]) -> None:
    for slots in slot_maps:
        for name, amount in slots.items():
            totals[name] = totals.get(name, Decimal(0)) + Decimal(amount)


class StatsRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def read(self) -> ControlPlaneStats:
        stats = ControlPlaneStats()
        async with self._sessions() as session:
            counts = await session.execute(
                sa.select(ReplicaRow.actor_name, ReplicaRow.status, sa.func.count())
                .where(ReplicaRow.status.not_in([ReplicaStatus.TERMINATED]))
                .group_by(ReplicaRow.actor_name, ReplicaRow.status)
            )
            for actor, status, count in counts:
                stats.replicas[(actor, str(status))] = count
            for name, pinned, desired in await session.execute(
                sa.select(ActorRow.name, ActorRow.pinned_replicas, ActorRow.desired_replicas)
            ):
                stats.desired[name] = pinned if pinned is not None else desired
            for agent_status, agents in await session.execute(
                sa.select(AgentRow.status, sa.func.count()).group_by(AgentRow.status)
            ):
                stats.agents[str(agent_status)] = agents
            offered: Iterable[dict[str, Any]] = await session.scalars(
                sa.select(AgentRow.slots_total).where(AgentRow.status == AgentStatus.ALIVE)
            )
            _add_up(stats.slots_total, offered)
            allocated: Iterable[dict[str, Any]] = await session.scalars(
                sa.select(ReplicaRow.slots).where(ReplicaRow.status.in_(ALLOCATED_REPLICA_STATUSES))
            )
            _add_up(stats.slots_used, allocated)
        return stats
