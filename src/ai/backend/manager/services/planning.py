"""The replica planner's pass: every actor planned in a transaction of its own, so that one
actor that cannot be planned (say, a stored spec that no longer validates) leaves the others
alone; it is logged once, and again only after it worked in between."""

from __future__ import annotations

import logging
from datetime import datetime

from ai.backend.common.log import BraceStyleAdapter

from ..repositories.replicas import ReplicaPlanRepository

log = BraceStyleAdapter(logging.getLogger(__name__))


class ReplicaPlanner:
    def __init__(self, replicas: ReplicaPlanRepository) -> None:
        self._replicas = replicas
        self._failing: set[str] = set()

    async def run(self, now: datetime) -> None:
        for name in await self._replicas.actor_names():
            try:
                await self._replicas.plan(name, now=now)
            except Exception:
                if name not in self._failing:
                    log.exception("cannot plan the replicas of actor {}; retrying every pass", name)
                self._failing.add(name)
            else:
                self._failing.discard(name)
