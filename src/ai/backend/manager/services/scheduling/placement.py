"""Where a replica goes (DESIGN.md §7): pure decisions over :class:`AgentState`, no I/O.

For one :class:`ReplicaRequest` the agents are narrowed in this order, and the first step that
leaves none explains why in the :class:`NoFit` message a user reads:

1. alive agents (``no alive agent``);
2. agents whose labels include every label of the actor's placement policy
   (``no alive agent matches labels {zone: a}``);
3. for GPU replicas, agents with at least one device of kind ``cuda`` whose model matches the
   ``gpu.model`` glob (case-insensitive ``fnmatch``) and whose memory is at least
   ``gpu.min_memory`` (``no GPU matches model 'H100*' with ≥ 80g``);
4. agents not passed over for this actor after a recent start failure (the caller's list);
5. agents with room: every non-GPU slot (``cpu``, ``mem`` …) within ``total - used``; for
   ``cuda.device: n``, ``n`` matching devices that are entirely free, taken first-fit in the
   agent's device order; for ``cuda.shares: s``, one matching device not held whole whose shares
   stay at most 1.0, the most used such device first (packing fractions together)
   (``needs 2 cuda.device, the best agent has 1 free``).

Among the agents with room, those offering no accelerator the replica does not ask for are
preferred (a CPU-only replica stays off GPU agents while CPU-only agents have room); then the
actor's selector picks one (``selectors``). :class:`PlacementPlanner` places replicas one after
another, applying each placement to the agents' state so the next replica sees it.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase

from ai.backend.common.dto.actor_spec import PlacementSelector
from ai.backend.common.types.units import format_size

from .allocation import (
    DEVICE_SLOT,
    GPU_DEVICE_KIND,
    SHARE_SLOT,
    AgentState,
    NoFit,
    Placement,
    ReplicaRequest,
)
from .selectors import SELECTORS, Fit

__all__ = [
    "Candidate",
    "Eligible",
    "NoFit",
    "Placement",
    "PlacementPlanner",
    "ReplicaRequest",
    "choose_agent",
    "eligible_agents",
    "place_replica",
]

_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An agent that passed the static filters, with its devices matching the request."""

    agent: AgentState
    devices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Eligible:
    """The agents that passed the static filters, and those that would have but for a recent
    start failure of the actor."""

    candidates: list[Candidate]
    passed_over: tuple[str, ...] = ()


def place_replica(
    request: ReplicaRequest,
    agents: Iterable[AgentState],
    *,
    excluded_agent_ids: AbstractSet[str] = frozenset(),
    last_agent_id: str | None = None,
) -> Placement | NoFit:
    """The placement of one replica on ``agents`` as they are now (nothing is changed)."""
    eligible = eligible_agents(request, agents, excluded_agent_ids=excluded_agent_ids)
    if isinstance(eligible, NoFit):
        return eligible
    return choose_agent(request, eligible, last_agent_id=last_agent_id)


def eligible_agents(
    request: ReplicaRequest,
    agents: Iterable[AgentState],
    *,
    excluded_agent_ids: AbstractSet[str] = frozenset(),
) -> Eligible | NoFit:
    """Steps 1-4 of the module docstring: what does not change while a pass places replicas."""
    alive = sorted((agent for agent in agents if agent.alive), key=lambda agent: agent.id)
    if not alive:
        return NoFit("no alive agent")
    labelled = [
        agent for agent in alive if all(agent.labels.get(k) == v for k, v in request.labels)
    ]
    if not labelled:
        return NoFit(f"no alive agent matches labels {_format_labels(request)}")
    if request.wants_gpu:
        candidates = []
        for agent in labelled:
            devices = _matching_devices(request, agent)
            if devices:
                candidates.append(Candidate(agent, devices))
        if not candidates:
            return NoFit(_no_gpu_message(request))
    else:
        candidates = [Candidate(agent, ()) for agent in labelled]
    remaining = [c for c in candidates if c.agent.id not in excluded_agent_ids]
    passed_over = tuple(c.agent.id for c in candidates if c.agent.id in excluded_agent_ids)
    if not remaining:
        return NoFit(
            f"every matching agent recently failed to start a replica of {request.actor_name}"
            f" ({', '.join(passed_over)}); retrying after the start-failure backoff"
        )
    return Eligible(remaining, passed_over)


def choose_agent(
    request: ReplicaRequest,
    eligible: Eligible,
    *,
    last_agent_id: str | None = None,
) -> Placement | NoFit:
    """Step 5 and the selector: the agent (and devices) among the candidates with room."""
    candidates = eligible.candidates
    fits = [fit for fit in (_fit(request, c) for c in candidates) if fit is not None]
    if not fits:
        message = _shortfall_message(request, candidates)
        if eligible.passed_over:
            message += (
                f" (passed over after a recent start failure: {', '.join(eligible.passed_over)})"
            )
        return NoFit(message)
    wanted = request.accelerator_families
    preferred = [fit for fit in fits if fit.agent.accelerator_families <= wanted]
    chosen = SELECTORS[request.selector].select(preferred or fits, last_agent_id=last_agent_id)
    devices = chosen.agent.devices
    return Placement(
        agent_id=chosen.agent.id,
        device_ids=tuple(devices[i].id for i in chosen.device_indices),
        slots=request.slots,
    )


class PlacementPlanner:
    """Places replicas one after another on a fixed set of agents, folding each placement
    into their state. Agents only fill up during a planner's life, so a request that did not
    fit once is answered from memory for the rest of it (a pass over 1,000 replicas of a few
    actors costs a few evaluations per actor, not per replica)."""

    def __init__(
        self,
        agents: Iterable[AgentState],
        *,
        round_robin_cursors: MutableMapping[str, str] | None = None,
    ) -> None:
        self._agents = sorted(agents, key=lambda agent: agent.id)
        self._agents_by_id = {agent.id: agent for agent in self._agents}
        self._cursors: MutableMapping[str, str] = (
            round_robin_cursors if round_robin_cursors is not None else {}
        )
        self._eligible: dict[tuple[ReplicaRequest, frozenset[str]], Eligible] = {}
        self._no_fit: dict[tuple[ReplicaRequest, frozenset[str]], NoFit] = {}

    @property
    def agents(self) -> Sequence[AgentState]:
        return self._agents

    def place(
        self, request: ReplicaRequest, *, excluded_agent_ids: AbstractSet[str] = frozenset()
    ) -> Placement | NoFit:
        key = (request, frozenset(excluded_agent_ids))  # no copy when given a frozenset
        known = self._no_fit.get(key)
        if known is not None:
            return known
        eligible = self._eligible.get(key)
        if eligible is None:
            found = eligible_agents(request, self._agents, excluded_agent_ids=key[1])
            if isinstance(found, NoFit):
                self._no_fit[key] = found
                return found
            eligible = self._eligible[key] = found
        result = choose_agent(
            request, eligible, last_agent_id=self._cursors.get(request.actor_name)
        )
        if isinstance(result, NoFit):
            self._no_fit[key] = result
            return result
        self._agents_by_id[result.agent_id].allocate(result.slots, result.device_ids)
        if request.selector is PlacementSelector.ROUND_ROBIN:
            self._cursors[request.actor_name] = result.agent_id
        return result


def _matching_devices(request: ReplicaRequest, agent: AgentState) -> tuple[int, ...]:
    pattern = request.gpu_model.lower() if request.gpu_model else None
    min_memory = request.gpu_min_memory or 0
    return tuple(
        i
        for i, device in enumerate(agent.devices)
        if device.kind == GPU_DEVICE_KIND
        and device.memory >= min_memory
        and (pattern is None or fnmatchcase(device.model.lower(), pattern))
    )


def _fit(request: ReplicaRequest, candidate: Candidate) -> Fit | None:
    """The devices ``candidate`` would give and its free amounts, or None without room."""
    agent = candidate.agent
    free_slots = agent.free_slots
    free: list[Decimal] = []
    for name, amount in request.needs:
        room = free_slots.get(name, _ZERO)
        if room < amount:
            return None
        free.append(room)
    usage = agent.usage
    count = request.device_count
    if count:
        whole_free = [i for i in candidate.devices if usage[i].is_free]
        if len(whole_free) < count:
            return None
        return Fit(agent, tuple(whole_free[:count]), (Decimal(len(whole_free)), *free))
    share = request.share
    if share:
        best: int | None = None
        best_shares = _ZERO
        total_room = _ZERO
        for i in candidate.devices:
            device = usage[i]
            if device.whole:
                continue
            room = _ONE - device.shares
            total_room += room
            if room >= share and (best is None or device.shares > best_shares):
                best, best_shares = i, device.shares
        if best is None:
            return None
        return Fit(agent, (best,), (total_room, *free))
    return Fit(agent, (), tuple(free))


def _shortfall_message(request: ReplicaRequest, candidates: Sequence[Candidate]) -> str:
    """The first thing no candidate has enough of, or that none has everything at once."""
    best = "the best matching agent" if request.labels or request.wants_gpu else "the best agent"
    count = request.device_count
    if count:
        most = max(sum(1 for i in c.devices if c.agent.usage[i].is_free) for c in candidates)
        if most < count:
            return f"needs {count} {DEVICE_SLOT}, {best} has {most} free"
    share = request.share
    if share:
        rooms = [
            _ONE - c.agent.usage[i].shares
            for c in candidates
            for i in c.devices
            if not c.agent.usage[i].whole
        ]
        most_room = max([_ZERO, *rooms])
        if most_room < share:
            return (
                f"needs {_number(share)} {SHARE_SLOT} of one GPU,"
                f" the best matching GPU has {_number(most_room)} free"
            )
    for name, amount in request.needs:
        most_free = max(max(c.agent.free(name), _ZERO) for c in candidates)
        if most_free < amount:
            wanted = _amount(name, amount)
            return f"needs {wanted} {name}, {best} has {_amount(name, most_free)} free"
    together = " + ".join(
        f"{_amount(name, amount)} {name}"
        for name, amount in sorted(request.slots.items())
        if amount
    )
    return f"needs {together} on one agent; no agent has all of it free at once"


def _no_gpu_message(request: ReplicaRequest) -> str:
    where = f" on agents with labels {_format_labels(request)}" if request.labels else ""
    if request.gpu_model is None and request.gpu_min_memory is None:
        return f"no alive agent has a GPU{where}"
    model = f" matches model {request.gpu_model!r}" if request.gpu_model is not None else ""
    memory = (
        f" with ≥ {format_size(request.gpu_min_memory)}"
        if request.gpu_min_memory is not None
        else ""
    )
    return f"no GPU{model}{memory}{where}"


def _format_labels(request: ReplicaRequest) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in request.labels) + "}"


def _number(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _amount(name: str, value: Decimal) -> str:
    if name == "mem" and value == value.to_integral_value():
        return format_size(int(value))
    return _number(value)
