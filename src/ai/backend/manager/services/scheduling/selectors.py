"""Agent selectors: which of the agents that can take a replica gets it.

Each selector sees only agents that fit the replica, already narrowed to those offering no
accelerator the replica does not need whenever any of those fit (see ``placement``), in agent
id order; ties go to the first. A :class:`Fit` carries the agent's free amounts *of the slots
the replica asks for*, scarcest first (GPU capacity, then CPU, then memory), compared as a
tuple.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ai.backend.common.dto.actor_spec import PlacementSelector

from .allocation import AgentState


@dataclass(frozen=True, slots=True)
class Fit:
    """An agent that can take the replica, with the devices it would give."""

    agent: AgentState
    device_indices: tuple[int, ...]
    free: tuple[Decimal, ...]


class AgentSelector(ABC):
    @abstractmethod
    def select(self, fits: Sequence[Fit], *, last_agent_id: str | None = None) -> Fit:
        """One of ``fits`` (never empty). ``last_agent_id`` is where the previous replica of
        the same actor went (round-robin's cursor; the others ignore it)."""


class ConcentratedSelector(AgentSelector):
    """Best fit: the agent with the fewest free resources that still fits, so that replicas
    pack onto few agents and whole agents stay free for large requests."""

    def select(self, fits: Sequence[Fit], *, last_agent_id: str | None = None) -> Fit:
        return min(fits, key=lambda fit: fit.free)


class DispersedSelector(AgentSelector):
    """Worst fit: the agent with the most free resources, spreading replicas out."""

    def select(self, fits: Sequence[Fit], *, last_agent_id: str | None = None) -> Fit:
        return max(fits, key=lambda fit: fit.free)


class RoundRobinSelector(AgentSelector):
    """The next agent by id after the one the actor's previous replica went to, wrapping
    around; the first agent when there is no previous one (or it is gone)."""

    def select(self, fits: Sequence[Fit], *, last_agent_id: str | None = None) -> Fit:
        if last_agent_id is not None:
            for fit in fits:
                if fit.agent.id > last_agent_id:
                    return fit
        return fits[0]


SELECTORS: dict[PlacementSelector, AgentSelector] = {
    PlacementSelector.CONCENTRATED: ConcentratedSelector(),
    PlacementSelector.DISPERSED: DispersedSelector(),
    PlacementSelector.ROUND_ROBIN: RoundRobinSelector(),
}
