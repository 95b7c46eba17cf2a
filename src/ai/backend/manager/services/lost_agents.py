"""The lost-agent sweep: agents silent for ``agent_timeout`` become ``lost`` (their replicas
too, and the planner replaces them elsewhere).

Silence is only fair to judge once the judge itself has been able to hear for that long: this
manager must have led the control loop, and reached the database, for ``agent_timeout`` without
a break. Otherwise a manager restart or a database outage would make every agent look lost at
once. Failures of other steps (Redis, one actor's planning) do not count: they do not stop
heartbeats from being recorded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from ai.backend.common.log import BraceStyleAdapter

from ..repositories.agents import AgentRepository, LostAgent

log = BraceStyleAdapter(logging.getLogger(__name__))


class LostAgentSweep:
    timeout: Final[timedelta]

    def __init__(
        self, agents: AgentRepository, *, timeout: timedelta, leading_for: Callable[[], float]
    ) -> None:
        self.timeout = timeout
        self._agents = agents
        self._leading_for = leading_for
        self._reachable_since: float | None = None  # the database answered every sweep since

    async def run(self, now: datetime) -> list[LostAgent]:
        loop = asyncio.get_running_loop()
        try:
            await self._agents.ping()
            if self._reachable_since is None:
                self._reachable_since = loop.time()
            listening = min(self._leading_for(), loop.time() - self._reachable_since)
            if listening < self.timeout.total_seconds():
                return []  # not up (or not reachable) long enough to call anybody silent
            lost = await self._agents.mark_lost(timeout=self.timeout)
        except Exception:
            self._reachable_since = None
            raise
        for agent in lost:
            log.warning("agent {} lost with {} replica(s)", agent.agent_id, len(agent.replica_ids))
        return lost
