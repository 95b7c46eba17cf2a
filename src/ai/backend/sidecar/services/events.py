"""Job events off the hot path: handlers enqueue, and the events go to ``bai:events`` in
batches (DESIGN.md §4.1a): inside the script of a commit on its way (:meth:`take`, no round
trip of their own), or, while no commit is coming, by the publisher's own task, one script call
per batch. One batch is on its way at a time, so events are written
in the order they were emitted. Non-terminal events only; terminal ones are written by the crew
through the job's end guard.

While Redis is away the batch in hand is retried with backoff and new events wait in a queue
bounded by count and by bytes (a partial may be large); beyond either bound new events are
dropped and counted, since progress is advisory and must never stall the data plane.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from ai.backend.common import json as wire_json
from ai.backend.common.dto.envelope_wire import WireEnvelope
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_streams import EVENT_FIELD, RedisStreamsTransport, now_iso

from ..metrics import SidecarMetrics
from .retrying import Backoff

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

MAX_BATCH = 512
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_QUEUED = 100_000
MAX_QUEUED_BYTES = 64 * 1024 * 1024
CLOSE_TIMEOUT = 5.0  # on close, how long queued events may take to get out


def event_fields(envelope: WireEnvelope, kind: str, actor: str) -> dict[str, Any]:
    """The fields every event of this envelope carries (a ``JobEvent`` without ``None``s)."""
    return {
        "job_id": envelope.job_key,
        "envelope_id": envelope.id,
        "kind": kind,
        "actor": actor,
        "step": envelope.route.current + 1,
        "total": len(envelope.route.actors),
        "attempt": envelope.attempt,
    }


class EventPublisher:
    def __init__(
        self,
        transport: RedisStreamsTransport,
        metrics: SidecarMetrics,
        *,
        max_queued: int = MAX_QUEUED,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        self._transport = transport
        self._metrics = metrics
        self._max_queued = max_queued
        self._max_queued_bytes = max_queued_bytes
        self._stream = transport.keys.events
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._emitted = 0  # events accepted so far; event n is written once _written >= n
        self._written = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._in_flight = False  # a batch is being written (by the task or a commit)
        self._carriers = 0  # commits on their way, which will take what is queued
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    @property
    def queued(self) -> tuple[int, int]:
        """Events waiting to be written, and their bytes."""
        return len(self._queue), self._queued_bytes

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-publisher")

    def emit(self, event: dict[str, Any]) -> int:
        """Queue the event; returns its number for :meth:`written` (a dropped event gets the
        number of the last one queued: there is nothing more to wait for)."""
        event.setdefault("at", now_iso())
        data = wire_json.dumps(event)
        if self._queue and (
            len(self._queue) >= self._max_queued
            or self._queued_bytes + len(data) > self._max_queued_bytes
        ):
            self.dropped += 1
            self._metrics.events_dropped.inc()
            if self.dropped % 10_000 == 1:
                log.warning("job events are not getting out; {} dropped so far", self.dropped)
            return self._emitted
        self._queue.append(data)
        self._queued_bytes += len(data)
        self._emitted += 1
        self._idle.clear()
        self._ready.set()
        return self._emitted

    async def written(self, number: int) -> None:
        """Wait until event ``number`` and those before it are written (or given up)."""
        if number <= self._written:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((number, future))
        await future

    def _mark_written(self, count: int) -> None:
        self._written += count
        waiting = []
        for number, future in self._waiters:
            if number <= self._written:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((number, future))
        self._waiters = waiting

    async def close(self) -> None:
        """Write what is queued (for up to ``CLOSE_TIMEOUT`` seconds), then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("{} job events were not written before shutdown", len(self._queue))
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def carrier_coming(self) -> None:
        """A commit is on its way: it will carry the queued events (see :meth:`take`)."""
        self._carriers += 1

    def carrier_done(self) -> None:
        """That commit is done; events still queued go out with the next, or on their own."""
        self._carriers -= 1
        if self._queue and not self._carriers:
            self._ready.set()

    def take(self) -> list[bytes]:
        """A batch of queued events for a commit to write, unless one is on its way already;
        the commit must then call :meth:`taken` with the batch and whether it was written."""
        if self._in_flight or not self._queue:
            return []
        self._in_flight = True
        return self._take_batch()

    def taken(self, batch: list[bytes], *, written: bool, refused: int = 0) -> None:
        """A (non-empty) batch from :meth:`take` was written (``refused`` of its events dropped
        by the events stream), or, not written, goes back in front."""
        assert batch, "only a batch take() handed out is given back"
        self._in_flight = False
        if refused:
            self._count_dropped(refused, "the events stream refused them")
        if written:
            self._mark_written(len(batch))
        else:
            self._queue.extendleft(reversed(batch))
            self._queued_bytes += sum(map(len, batch))
        if self._queue:
            self._ready.set()
        elif written:
            self._idle.set()

    def _count_dropped(self, count: int, why: str) -> None:
        self.dropped += count
        self._metrics.events_dropped.inc(count)
        log.error("dropped {} job events: {}", count, why)

    def _take_batch(self) -> list[bytes]:
        batch: list[bytes] = []
        size = 0
        while self._queue and len(batch) < MAX_BATCH and (not batch or size < MAX_BATCH_BYTES):
            data = self._queue.popleft()
            batch.append(data)
            size += len(data)
        self._queued_bytes -= size
        return batch

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            if not self._queue or self._in_flight or self._carriers:
                if not self._queue and not self._in_flight:
                    self._idle.set()
                self._ready.clear()
                await self._ready.wait()
                await asyncio.sleep(0)  # a commit starting in this loop turn carries them
                continue
            self._in_flight = True
            batch = self._take_batch()
            while True:
                try:
                    await self._transport.append_many(self._stream, EVENT_FIELD, batch)
                except Exception as e:
                    if not self._transport.is_transient(e):
                        self._count_dropped(len(batch), f"Redis refused them: {e}")
                        self._mark_written(len(batch))
                        self._in_flight = False
                        break
                    if backoff.attempts == 0:
                        log.warning("cannot write job events ({}); retrying", e)
                    await backoff.wait()
                    continue
                if backoff.attempts:
                    log.info("job events are getting out again")
                backoff.reset()
                self._mark_written(len(batch))
                self._in_flight = False
                break
