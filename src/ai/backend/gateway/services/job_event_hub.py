"""Live job events for the listeners of this gateway replica (SSE streams, waiting calls, MCP
progress). Events are handed out only once stored (they carry their ``seq``): directly when this
replica stored them, else after another replica's announcement, which makes the listener read
the new rows from the database. A listener registers *before* it reads a job's history, so
nothing stored in between is missed; it catches up from the database on any gap, after a lost
announcement channel, and at each heartbeat, so a lost announcement delays, never loses, an
event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ai.backend.common.dto.gateway_api import StoredJobEvent
from ai.backend.common.json import dumps, loads
from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


@dataclass(eq=False)
class JobListener:
    """What arrived for one job since the listener last looked: stored events in order, or a
    ``poke`` (news stored elsewhere: read the database)."""

    job_id: str
    events: list[StoredJobEvent] = field(default_factory=list)
    poked: bool = False
    _signal: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, events: Sequence[StoredJobEvent]) -> None:
        self.events.extend(events)
        self._signal.set()

    def poke(self) -> None:
        self.poked = True
        self._signal.set()

    async def wait(self, timeout: float | None) -> bool:
        """Whether news came within ``timeout`` seconds (``None``: wait for it)."""
        if not self._signal.is_set():
            try:
                # (asyncio.timeout, not wait_for: a cancel that lands as the wait ends is kept)
                async with asyncio.timeout(timeout):
                    await self._signal.wait()
            except TimeoutError:
                return False
        return True

    def take(self) -> tuple[list[StoredJobEvent], bool]:
        events, poked = self.events, self.poked
        self.events, self.poked = [], False
        self._signal.clear()
        return events, poked


class JobEventHub:
    def __init__(self, gateway_id: str) -> None:
        self._gateway_id = gateway_id
        self._listeners: dict[str, set[JobListener]] = {}
        # how this replica's own announcements begin: they come back on the channel, and are
        # recognised without parsing them
        self._own_prefix = dumps({"g": gateway_id, "j": []})[: -len(b"[]}")]

    @contextlib.contextmanager
    def listen(self, job_id: str) -> Iterator[JobListener]:
        listener = JobListener(job_id)
        self._listeners.setdefault(job_id, set()).add(listener)
        try:
            yield listener
        finally:
            listeners = self._listeners.get(job_id)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[job_id]

    @property
    def listening(self) -> int:
        return sum(len(listeners) for listeners in self._listeners.values())

    def deliver(self, events: Sequence[StoredJobEvent]) -> None:
        """Events this replica has just stored, in order."""
        by_job: dict[str, list[StoredJobEvent]] = {}
        for event in events:
            if event.job_id in self._listeners:
                by_job.setdefault(event.job_id, []).append(event)
        for job_id, job_events in by_job.items():
            for listener in self._listeners.get(job_id, ()):
                listener.push(job_events)

    def poke_all(self) -> None:
        """The announcement channel was (re)joined: news may have been missed."""
        for listeners in self._listeners.values():
            for listener in listeners:
                listener.poke()

    def announcement(self, events: Sequence[StoredJobEvent]) -> bytes:
        """What this replica tells the others after storing ``events``."""
        return dumps({"g": self._gateway_id, "j": sorted({e.job_id for e in events})})

    def on_announcement(self, message: bytes) -> None:
        if message.startswith(self._own_prefix):
            return  # delivered directly
        try:
            body = loads(message)
            if body["g"] == self._gateway_id:
                return  # delivered directly
            job_ids = body["j"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed stored-events announcement")
            return
        for job_id in job_ids:
            for listener in self._listeners.get(job_id, ()):
                listener.poke()
