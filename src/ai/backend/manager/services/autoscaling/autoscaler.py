"""The autoscaler: sets each actor's ``desired_replicas`` from the depth of its queue.

A step of the leader's control loop (``run_once`` every pass; the loop may pass often). Each
actor is evaluated when its own ``scaling.polling_interval`` has elapsed since its last
evaluation by this process, with the rules of :mod:`.policy`. Actors pinned by ``scale`` are
left alone. Every change of the count is a ``scheduler_events`` row (``scale_up``,
``scale_down``, ``scale_to_zero``, ``activate``) written in the same transaction as the count;
a change that lost a race with a ``scale``, an apply or a delete is dropped and decided again at
the next poll. Running it twice at the same time changes nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Final

from redis.asyncio import Redis

from ai.backend.common.log import BraceStyleAdapter

from ...clients.queue_depth import queue_depths
from ...repositories.autoscaling import AutoscalingRepository, ScalableActor, ScalingUpdate
from .policy import ScaleDecision, ScalerState, decide

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


class Autoscaler:
    repository: Final[AutoscalingRepository]
    redis: Final[Redis]
    key_prefix: Final[str]

    def __init__(self, *, repository: AutoscalingRepository, redis: Redis, key_prefix: str) -> None:
        self.repository = repository
        self.redis = redis
        self.key_prefix = key_prefix
        self._last_evaluated: dict[str, datetime] = {}

    def _is_due(self, actor: ScalableActor, now: datetime) -> bool:
        last = self._last_evaluated.get(actor.name)
        return last is None or now - last >= actor.policy.polling_interval

    async def run_once(self, now: datetime) -> list[ScaleDecision]:
        """Evaluate the actors that are due; returns the changes of count that were stored
        (``actor_name`` filled in), in actor name order."""
        actors = await self.repository.scalable_actors()
        names = {actor.name for actor in actors}
        self._last_evaluated = {n: t for n, t in self._last_evaluated.items() if n in names}
        due = [actor for actor in actors if self._is_due(actor, now)]
        if not due:
            return []
        depths = await queue_depths(self.redis, self.key_prefix, [actor.name for actor in due])
        changes: list[ScaleDecision] = []
        for actor in due:
            self._last_evaluated[actor.name] = now
            decision = await self._evaluate(actor, depths.get(actor.name, 0), now)
            if decision is not None:
                changes.append(decision)
        return changes

    async def _evaluate(
        self, actor: ScalableActor, depth: int, now: datetime
    ) -> ScaleDecision | None:
        state = ScalerState(
            scaled_up_at=actor.scaled_up_at,
            scaled_down_at=actor.scaled_down_at,
            idle_since=actor.idle_since,
        )
        decision = replace(
            decide(actor.policy, actor.desired_replicas, depth, state, now), actor_name=actor.name
        )
        if not decision.changed and decision.state == state:
            return None
        update = ScalingUpdate(
            desired_replicas=decision.desired,
            scaled_up_at=decision.state.scaled_up_at,
            scaled_down_at=decision.state.scaled_down_at,
            idle_since=decision.state.idle_since,
            event_kind=decision.kind.value if decision.changed and decision.kind else None,
            event_message=decision.reason,
        )
        if not await self.repository.record(actor, update, now=now):
            log.info("actor {} changed while deciding; deciding again at the next poll", actor.name)
            self._last_evaluated.pop(actor.name, None)
            return None
        if not decision.changed:
            return None
        log.info("actor {}: {}", actor.name, decision.reason)
        return decision
