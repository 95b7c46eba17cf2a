"""The scheduling leader's loop: lost agents → autoscaler → replica planner → scheduler.

Only the manager holding the leader lock runs it; every manager serves the API. A pass runs
every ``interval``, and at once when something asks for it (``wake``: an apply, a scale, a
delete, a failed replica), so that a change reaches the agents without waiting a period.
A step that fails is logged and the next pass tries again; one bad step never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__name__))

Step = Callable[[datetime], Awaitable[object]]


class Leadership(Protocol):
    @property
    def is_leader(self) -> bool: ...


@dataclass(frozen=True)
class NamedStep:
    name: str
    run: Step


class ControlLoop:
    leader: Final[Leadership]
    interval: Final[float]

    def __init__(
        self,
        *,
        leader: Leadership,
        steps: Sequence[NamedStep],
        interval: float,
        on_pass: Callable[[], None] | None = None,
    ) -> None:
        self.leader = leader
        self.interval = interval
        self._steps = list(steps)
        self._wake = asyncio.Event()
        self._on_pass = on_pass
        self._failing: set[str] = set()
        self._leading_since: float | None = None
        self.passes = 0

    def leading_for(self) -> float:
        """Seconds this manager has led the loop without a break (0 when it does not lead)."""
        if self._leading_since is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._leading_since

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self, now: datetime | None = None) -> None:
        loop = asyncio.get_running_loop()
        if self._leading_since is None:
            self._leading_since = loop.time()
        for step in self._steps:
            if not self.leader.is_leader:
                self._leading_since = None  # lost the lock mid-pass: leave the rest to the next
                return
            try:
                await step.run(now or datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:
                if step.name not in self._failing:
                    log.exception("control step {} failed; retrying every pass", step.name)
                self._failing.add(step.name)
            else:
                if step.name in self._failing:
                    log.info("control step {} works again", step.name)
                self._failing.discard(step.name)
        self.passes += 1
        if self._on_pass is not None:
            self._on_pass()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            if self.leader.is_leader:
                await self.run_once()
            else:
                self._leading_since = None
            waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
            try:
                await asyncio.wait(waiters, timeout=self.interval, return_when="FIRST_COMPLETED")
            finally:
                for waiter in waiters:
                    waiter.cancel()
