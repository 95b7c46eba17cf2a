"""Agents (manager ``/v1/agents``): the nodes that run replicas."""

from __future__ import annotations

import builtins

from ai.backend.common.dto.manager_api import AgentInfo

from ..transport import ServiceEndpoint, parse_as, parse_items, path_segment


class Agents:
    def __init__(self, manager: ServiceEndpoint) -> None:
        self._manager = manager

    async def list(self) -> builtins.list[AgentInfo]:
        answer = await self._manager.get("/v1/agents")
        return parse_items(AgentInfo, answer, what="agent list")

    async def get(self, agent_id: str) -> AgentInfo:
        """The agent with its devices and the replicas it runs."""
        answer = await self._manager.get(f"/v1/agents/{path_segment(agent_id)}")
        return parse_as(AgentInfo, answer, what="agent")
