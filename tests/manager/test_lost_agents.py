"""The lost-agent sweep judges silence only after it has listened for ``agent_timeout``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from ai.backend.manager.repositories.agents import AgentRepository, LostAgent
from ai.backend.manager.services.lost_agents import LostAgentSweep

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=30)


class FakeAgents:
    """What the sweep calls: ``ping`` (the database) and ``mark_lost``."""

    def __init__(self) -> None:
        self.reachable = True
        self.swept = 0

    async def ping(self) -> None:
        if not self.reachable:
            raise OSError("connection refused")

    async def mark_lost(self, *, timeout: timedelta) -> list[LostAgent]:
        self.swept += 1
        return [LostAgent("node-1", ["r1"])]


def _sweep(agents: FakeAgents, leading_for: list[float]) -> LostAgentSweep:
    return LostAgentSweep(
        cast(AgentRepository, agents), timeout=TIMEOUT, leading_for=lambda: leading_for[0]
    )


async def test_a_new_leader_waits_for_the_timeout_before_calling_anybody_lost() -> None:
    agents, leading = FakeAgents(), [5.0]
    sweep = _sweep(agents, leading)
    assert await sweep.run(NOW) == []
    assert agents.swept == 0
    leading[0] = 31.0  # led that long; but the database has answered for a moment only
    assert await sweep.run(NOW) == []
    assert agents.swept == 0


async def test_a_database_outage_restarts_the_wait() -> None:
    agents, leading = FakeAgents(), [1000.0]
    sweep = _sweep(agents, leading)
    sweep._reachable_since = -1e9  # reachable for ages (the loop's clock)
    assert await sweep.run(NOW) == [LostAgent("node-1", ["r1"])]
    agents.reachable = False
    with pytest.raises(OSError):
        await sweep.run(NOW)
    agents.reachable = True
    assert await sweep.run(NOW) == []  # back, but not for agent_timeout yet
    assert agents.swept == 1
