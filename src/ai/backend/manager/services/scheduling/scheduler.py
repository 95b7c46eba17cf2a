"""The scheduling pass: pending replicas → concrete allocations on agents (DESIGN.md §7).

A pass takes up to ``max_replicas_per_pass`` pending replicas of active actors in FIFO order
(``created_at``, then id) and, in one transaction (``repositories.scheduling``):

* derives every alive agent's allocations from the replica rows holding slots on it;
* places each replica with :class:`~.placement.PlacementPlanner` (the actor's *current* spec
  decides its slots, GPU constraints and placement policy), skipping agents where the actor
  failed to start within ``start_failure_backoff`` (``start_failed`` events). A replica that
  does not fit is skipped, not waited on, so one large request never blocks smaller ones
  behind it;
* writes the placed replicas as ``scheduled`` with agent, slots and device ids, each unplaced
  replica's reason into its ``status_info``, one ``unschedulable`` event per actor and reason
  (not repeated within ``unschedulable_event_interval``), and the agents' ``slots_used``.

Safety does not depend on the leader lock (``leader``): the agent row locks serialize passes
that could touch the same agent. When a pass filled its batch, the next batch (the replicas
queued after it) follows at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.agent import SYSTEM_CONTEXT
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.types.slots import ResourceSlot

from ...config import SchedulerConfig
from ...repositories.scheduling import (
    HeldAllocation,
    PendingReplica,
    ReplicaAssignment,
    SchedulingDecision,
    SchedulingRepository,
    SchedulingSnapshot,
    UnplaceableReplica,
)
from .allocation import DEVICE_SLOT, AgentState, NoFit, ReplicaRequest
from .placement import PlacementPlanner

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

# a run goes through the queue in batches, at most this many
MAX_PASSES_PER_RUN: Final = 20


@dataclass(frozen=True)
class ScheduleReport:
    """What :meth:`Scheduler.schedule_pending` did, over all the passes it ran."""

    placed: list[ReplicaAssignment] = field(default_factory=list)
    unplaceable: list[UnplaceableReplica] = field(default_factory=list)
    pending_seen: int = 0
    events_written: int = 0
    passes: int = 0


def plan_pass(
    snapshot: SchedulingSnapshot, *, round_robin_cursors: dict[str, str] | None = None
) -> SchedulingDecision:
    """The decisions of one pass over ``snapshot`` (pure: no I/O)."""
    agents = _agent_states(snapshot)
    planner = PlacementPlanner(agents, round_robin_cursors=round_robin_cursors)
    failed_on: dict[str, set[str]] = defaultdict(set)
    for actor_name, agent_id in snapshot.failed_starts:
        failed_on[actor_name].add(agent_id)
    excluded = {actor_name: frozenset(ids) for actor_name, ids in failed_on.items()}
    requests: dict[str, ReplicaRequest | NoFit] = {}
    assignments: list[ReplicaAssignment] = []
    unplaceable: list[UnplaceableReplica] = []
    for replica in snapshot.pending:
        request = requests.get(replica.actor_name)
        if request is None:
            request = requests[replica.actor_name] = _request_of(
                replica.actor_name, snapshot.actor_specs.get(replica.actor_name)
            )
        result = (
            request
            if isinstance(request, NoFit)
            else planner.place(
                request, excluded_agent_ids=excluded.get(replica.actor_name, frozenset())
            )
        )
        if isinstance(result, NoFit):
            unplaceable.append(UnplaceableReplica(replica.id, replica.actor_name, result.message))
            continue
        assignments.append(
            ReplicaAssignment(
                replica_id=replica.id,
                actor_name=replica.actor_name,
                agent_id=result.agent_id,
                slots=result.slots.to_json(),
                device_ids=list(result.device_ids),
            )
        )
    return SchedulingDecision(
        assignments=assignments,
        unplaceable=unplaceable,
        slots_used={agent.id: agent.slots_used.to_json() for agent in agents},
    )


def _agent_states(snapshot: SchedulingSnapshot) -> list[AgentState]:
    agents: dict[str, AgentState] = {}
    for capacity in snapshot.agents:
        try:
            agents[capacity.id] = AgentState.from_json(
                id=capacity.id,
                slots_total=capacity.slots_total,
                devices=capacity.devices,
                labels=capacity.labels,
            )
        except (ValueError, KeyError, TypeError) as e:
            log.error(
                "agent {} has unreadable slots or devices; not placing there: {}", capacity.id, e
            )
    for held in snapshot.allocations:
        agent = agents.get(held.agent_id)
        if agent is not None:
            agent.allocate(_held_slots(held), held.device_ids)
    return list(agents.values())


def _held_slots(held: HeldAllocation) -> ResourceSlot:
    try:
        return ResourceSlot.parse(held.slots)
    except ValueError as e:
        # keep its devices out of reach rather than risk giving them twice
        log.error("replica on agent {} holds unreadable slots {}: {}", held.agent_id, held.slots, e)
        return ResourceSlot({DEVICE_SLOT: len(held.device_ids)})


def _request_of(actor_name: str, spec_json: dict[str, object] | None) -> ReplicaRequest | NoFit:
    if spec_json is None:
        return NoFit(f"actor {actor_name} has no spec")
    try:
        spec = ActorSpec.model_validate(spec_json, context=SYSTEM_CONTEXT)
    except ValidationError as e:
        log.error("actor {} has an invalid stored spec: {}", actor_name, e)
        return NoFit(f"invalid actor spec: {e.errors(include_url=False)[0]['msg']}")
    return ReplicaRequest.from_spec(spec)


class Scheduler:
    """Runs scheduling passes; keeps the round-robin cursors (per actor) between them."""

    repository: Final[SchedulingRepository]
    config: Final[SchedulerConfig]

    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: SchedulerConfig) -> None:
        self.repository = SchedulingRepository(sessions)
        self.config = config
        self._round_robin_cursors: dict[str, str] = {}

    async def run_once(self, now: datetime | None = None) -> ScheduleReport:
        """A control-loop step: :meth:`schedule_pending`."""
        return await self.schedule_pending(now=now)

    async def schedule_pending(self, *, now: datetime | None = None) -> ScheduleReport:
        """Place what fits of the pending replicas; passes follow each other while each fills
        its batch. ``now`` (default: the wall clock) dates the writes and the windows of the
        start-failure backoff and of the event quiet interval."""
        now = now or datetime.now(UTC)
        placed: list[ReplicaAssignment] = []
        unplaceable: list[UnplaceableReplica] = []
        pending_seen = events = passes = 0
        batch = self.config.max_replicas_per_pass
        after: PendingReplica | None = None
        while passes < MAX_PASSES_PER_RUN:
            outcome = await self.repository.run_pass(
                self._decide,
                now=now,
                max_replicas=batch,
                after=after,
                start_failure_backoff=self.config.start_failure_backoff,
                event_quiet_interval=self.config.unschedulable_event_interval,
            )
            passes += 1
            placed += outcome.decision.assignments
            unplaceable += outcome.decision.unplaceable
            pending_seen += outcome.pending_seen
            events += outcome.events_written
            if outcome.pending_seen < batch or outcome.last_pending is None:
                break
            after = outcome.last_pending  # the next batch: the replicas queued after this one
        if placed or events:
            log.info("placed {} replica(s); {} cannot be placed now", len(placed), len(unplaceable))
        for item in placed:
            log.debug("placed {} on {} {}", item.replica_id, item.agent_id, item.device_ids)
        return ScheduleReport(
            placed=placed,
            unplaceable=unplaceable,
            pending_seen=pending_seen,
            events_written=events,
            passes=passes,
        )

    def _decide(self, snapshot: SchedulingSnapshot) -> SchedulingDecision:
        return plan_pass(snapshot, round_robin_cursors=self._round_robin_cursors)
