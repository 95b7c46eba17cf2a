"""An actor's logs: the lines of its replicas, each read from the agent that runs (or ran) it.

Which replicas: with a ``replica`` filter, the one it names (an exact id, else the unique replica
whose id starts with it or with ``{actor}-{filter}``), whatever its status; without one, every
replica placed on an agent that is not gone (``scheduled`` … ``terminating``, and ``failed``,
whose logs say why). A replica the agent has no logs of contributes nothing.

Order: without ``follow``, replica after replica (oldest first), each runtime then sidecar, each
line passed on as it arrives. ``TAIL_WINDOW`` agents are asked at once: the replicas after the
one being passed on are read ahead, each into a queue of at most ``READ_AHEAD_LINES``, so that
memory stays bounded however long the tails. With ``follow``, lines as they arrive, each
replica's in order. An agent that cannot be asked is one line
``{"replica_id", "process": "error", "line": "agent … unreachable: …"}``, not the end of the
stream. A followed stream ends when every agent has ended its part (or the caller leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from ai.backend.common.aio import cancel_and_wait
from ai.backend.common.dto.agent import ReplicaStatus
from ai.backend.common.errors import InvalidInput
from ai.backend.common.log import BraceStyleAdapter

from ..clients.agent_logs import (
    AgentEndpoint,
    AgentLogClient,
    AgentUnreachable,
    LogLine,
    ReplicaLogsMissing,
)
from ..errors import ReplicaNotFound
from ..repositories.log_sources import LogSourceRepository, ReplicaLogSource

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

ERROR_PROCESS = "error"
LOGGED_STATUSES = frozenset(
    {
        ReplicaStatus.SCHEDULED,
        ReplicaStatus.STARTING,
        ReplicaStatus.RUNNING,
        ReplicaStatus.TERMINATING,
        ReplicaStatus.FAILED,
    }
)
IDLE_TICK = 1.0  # a followed stream yields an empty batch after this long without a line
QUEUE_SIZE = 1000
BATCH_SIZE = 500
TAIL_WINDOW = 8  # replicas whose tails are read at once
READ_AHEAD_LINES = 256  # lines of a tail read ahead while an earlier replica's are passed on


@dataclass(frozen=True)
class LogRequest:
    replica: str | None
    process: str
    tail: int
    follow: bool


def select_replicas(
    actor: str, sources: Sequence[ReplicaLogSource], replica: str | None
) -> list[ReplicaLogSource]:
    """The replicas a request is about (see the module's docstring); :class:`ReplicaNotFound`
    (404) when the filter names none, :class:`InvalidInput` (400) when it names several."""
    if replica is None:
        return [s for s in sources if s.agent_id is not None and s.status in LOGGED_STATUSES]
    exact = [s for s in sources if s.replica_id == replica]
    if exact:
        return exact
    prefixes = (replica, f"{actor}-{replica}")
    matches = [s for s in sources if s.replica_id.startswith(prefixes)]
    if not matches:
        raise ReplicaNotFound(f"replica: actor {actor!r} has no replica {replica!r}")
    if len(matches) > 1:
        names = ", ".join(s.replica_id for s in matches[:5])
        raise InvalidInput(f"replica: {replica!r} names several replicas of {actor!r}: {names}")
    return matches


def _error_line(replica_id: str, message: str) -> LogLine:
    return LogLine(replica_id=replica_id, process=ERROR_PROCESS, line=message)


class _StreamEnd:
    """One replica's part of a stream has ended."""


_END = _StreamEnd()
LineQueue: TypeAlias = asyncio.Queue[LogLine | _StreamEnd]


@dataclass(frozen=True)
class _TailReader:
    """One replica's tail being read into ``queue`` by ``task``, which ends it with ``_END``."""

    queue: LineQueue
    task: asyncio.Task[None]


async def _queued_batches(queue: LineQueue) -> AsyncGenerator[list[LogLine], None]:
    """The lines of ``queue`` until ``_END``, in batches of what is there (up to BATCH_SIZE)."""
    while True:
        item = await queue.get()
        batch: list[LogLine] = []
        while not isinstance(item, _StreamEnd):
            batch.append(item)
            if len(batch) >= BATCH_SIZE or queue.empty():
                break
            item = queue.get_nowait()
        if batch:
            yield batch
        if isinstance(item, _StreamEnd):
            return


class ActorLogStream:
    """The lines of some replicas, in batches; made by :meth:`ActorLogService.open`."""

    def __init__(
        self,
        *,
        client: AgentLogClient,
        sources: list[ReplicaLogSource],
        request: LogRequest,
        idle_tick: float,
    ) -> None:
        self._client = client
        self._sources = sources
        self._request = request
        self._idle_tick = idle_tick

    async def batches(self) -> AsyncGenerator[list[LogLine], None]:
        """Batches of lines; while following, an empty batch after ``idle_tick`` of silence
        (for heartbeats and for noticing a caller that left)."""
        if self._request.follow:
            async with contextlib.aclosing(self._followed_batches()) as followed:
                async for batch in followed:
                    yield batch
            return
        async with contextlib.aclosing(self._tail_batches()) as tails:
            async for batch in tails:
                yield batch

    async def _tail_batches(self) -> AsyncGenerator[list[LogLine], None]:
        """Replica after replica, each one's lines as they arrive (see the module's docstring)."""
        waiting: Iterator[ReplicaLogSource] = iter(self._sources)
        readers: deque[_TailReader] = deque()

        def read_ahead() -> None:
            while len(readers) < TAIL_WINDOW and (source := next(waiting, None)) is not None:
                queue: LineQueue = asyncio.Queue(READ_AHEAD_LINES)
                readers.append(_TailReader(queue, asyncio.create_task(self._pump(source, queue))))

        try:
            read_ahead()
            while readers:
                async with contextlib.aclosing(_queued_batches(readers[0].queue)) as batches:
                    async for batch in batches:
                        yield batch
                readers.popleft()
                read_ahead()
        finally:
            for reader in readers:
                await cancel_and_wait(reader.task)

    async def _followed_batches(self) -> AsyncGenerator[list[LogLine], None]:
        """Lines as they arrive from every replica's agent at once, until each has ended."""
        queue: LineQueue = asyncio.Queue(QUEUE_SIZE)
        pumps = [asyncio.create_task(self._pump(s, queue)) for s in self._sources]
        running = len(pumps)
        try:
            while running:
                try:
                    item = await asyncio.wait_for(queue.get(), self._idle_tick)
                except TimeoutError:
                    yield []
                    continue
                batch: list[LogLine] = []
                while True:  # what else is waiting, up to BATCH_SIZE lines
                    if isinstance(item, _StreamEnd):
                        running -= 1
                    else:
                        batch.append(item)
                    if len(batch) >= BATCH_SIZE or queue.empty():
                        break
                    item = queue.get_nowait()
                if batch:
                    yield batch
        finally:
            for pump in pumps:
                await cancel_and_wait(pump)

    async def _lines(self, source: ReplicaLogSource) -> AsyncGenerator[LogLine, None]:
        """One replica's lines, ending in an error line when its agent cannot be asked."""
        agent_id = source.agent_id
        if agent_id is None or source.agent_addr is None:
            return  # never placed: no logs anywhere
        if source.credential is None:
            yield _error_line(
                source.replica_id,
                f"agent {agent_id} unreachable: no active agent keypair is bound to it"
                " (its heartbeats are not signed with a keypair of role agent)",
            )
            return
        endpoint = AgentEndpoint(
            agent_id, source.agent_addr, source.credential.access_key, source.credential.secret_key
        )
        request = self._request
        try:
            async for line in self._client.lines(
                endpoint,
                source.replica_id,
                process=request.process,
                tail=request.tail,
                follow=request.follow,
            ):
                yield line
        except ReplicaLogsMissing:
            return
        except AgentUnreachable as e:
            log.info("logs of replica {}: agent {} unreachable: {}", source.replica_id, agent_id, e)
            yield _error_line(source.replica_id, f"agent {agent_id} unreachable: {e}")
            return
        if request.follow:
            yield _error_line(source.replica_id, f"agent {agent_id} ended the log stream")

    async def _guarded(self, source: ReplicaLogSource) -> AsyncGenerator[LogLine, None]:
        """:meth:`_lines`, with an unexpected failure as an error line of its own."""
        try:
            async with contextlib.aclosing(self._lines(source)) as lines:
                async for line in lines:
                    yield line
        except Exception:
            log.exception("reading the logs of replica {} failed", source.replica_id)
            yield _error_line(source.replica_id, "internal error while reading the logs")

    async def _pump(self, source: ReplicaLogSource, queue: LineQueue) -> None:
        async with contextlib.aclosing(self._guarded(source)) as lines:
            async for line in lines:
                await queue.put(line)
        await queue.put(_END)


class ActorLogService:
    def __init__(
        self,
        sources: LogSourceRepository,
        client: AgentLogClient,
        *,
        idle_tick: float = IDLE_TICK,
    ) -> None:
        self._sources = sources
        self._client = client
        self._idle_tick = idle_tick

    async def open(self, actor: str, request: LogRequest) -> ActorLogStream:
        """The stream of the actor's logs; raises before any line is read when the actor
        (:class:`ActorNotFound`) or the replica (:class:`ReplicaNotFound`) does not exist."""
        sources = select_replicas(actor, await self._sources.of_actor(actor), request.replica)
        return ActorLogStream(
            client=self._client, sources=sources, request=request, idle_tick=self._idle_tick
        )
