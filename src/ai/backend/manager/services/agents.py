"""Agents: heartbeats in, desired replicas out; listing for users."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from ai.backend.common.dto.agent import SYSTEM_CONTEXT, AgentHeartbeat, HeartbeatReply
from ai.backend.common.dto.base import validate_request
from ai.backend.common.dto.manager_api import AgentInfo, KeypairInfo
from ai.backend.common.errors import InvalidInput
from ai.backend.common.log import BraceStyleAdapter

from ..repositories.agents import AgentRepository
from ..repositories.retry import retry_on_deadlock
from .auth import require_agent

log = BraceStyleAdapter(logging.getLogger(__name__))


class AgentService:
    def __init__(self, agents: AgentRepository) -> None:
        self._agents = agents

    async def heartbeat(self, agent_id: str, body: Any, keypair: KeypairInfo) -> HeartbeatReply:
        require_agent(keypair)
        beat = validate_request(AgentHeartbeat, body, error=InvalidInput, context=SYSTEM_CONTEXT)
        if beat.agent_id != agent_id:
            raise InvalidInput(f"agent_id: {beat.agent_id!r} does not match the URL's {agent_id!r}")
        bound_key = keypair.access_key if keypair.role == "agent" else None
        desired = await retry_on_deadlock(
            lambda: self._agents.heartbeat(beat, access_key=bound_key, now=datetime.now(UTC))
        )
        return HeartbeatReply.model_construct(desired=desired)

    async def list_all(self) -> list[AgentInfo]:
        return await self._agents.list_all()

    async def get(self, agent_id: str) -> AgentInfo:
        return await self._agents.get(agent_id)
