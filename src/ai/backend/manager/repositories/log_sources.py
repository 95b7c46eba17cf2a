"""Where an actor's replica logs are: each replica's agent, its address, and the keypair the
agent heartbeats with (its binding, ``agents.access_key``), whose secret signs the request."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.agent import ReplicaStatus

from ..errors import ActorNotFound
from ..models import ActorRow, AgentRow, KeypairRow, ReplicaRow


@dataclass(frozen=True)
class AgentCredential:
    """An agent's bound keypair, active; what signs requests to the agent."""

    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class ReplicaLogSource:
    replica_id: str
    status: ReplicaStatus
    agent_id: str | None  # None: never placed
    agent_addr: str | None
    credential: AgentCredential | None  # None: no active agent keypair bound to the agent


class LogSourceRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def of_actor(self, name: str) -> list[ReplicaLogSource]:
        """Every replica the database still holds of the actor, oldest first;
        :class:`ActorNotFound` when there is no such actor."""
        async with self._sessions() as session:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            if await session.get(ActorRow, name) is None:
                raise ActorNotFound(f"actor {name!r} not found")
            rows = await session.execute(
                sa.select(
                    ReplicaRow.id,
                    ReplicaRow.status,
                    ReplicaRow.agent_id,
                    AgentRow.addr,
                    KeypairRow.access_key,
                    KeypairRow.secret_key,
                )
                .outerjoin(AgentRow, AgentRow.id == ReplicaRow.agent_id)
                .outerjoin(
                    KeypairRow,
                    sa.and_(KeypairRow.access_key == AgentRow.access_key, KeypairRow.is_active),
                )
                .where(ReplicaRow.actor_name == name)
                .order_by(ReplicaRow.created_at, ReplicaRow.id)
            )
            return [
                ReplicaLogSource(
                    replica_id=replica_id,
                    status=status,
                    agent_id=agent_id,
                    agent_addr=addr,
                    credential=(
                        AgentCredential(access_key, secret_key)
                        if access_key is not None and secret_key is not None
                        else None
                    ),
                )
                for replica_id, status, agent_id, addr, access_key, secret_key in rows
            ]
