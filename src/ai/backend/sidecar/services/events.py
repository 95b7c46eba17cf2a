"""Job events off the hot path: handlers enqueue, one task writes them to ``bai:events`` in
pipelined batches (DESIGN.md §4.1a). Non-terminal events only; terminal ones are written by the
crew atomically with the job's branch accounting."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.exceptions import RedisError

from ai.backend.common.aio import cancel_and_wait
from ai.backend.common.dto.envelope import Envelope
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.redis_streams import RedisStreamsTransport

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

EVENT_FIELD = b"ev"
MAX_BATCH = 512
MAX_QUEUED = 100_000  # while Redis is unreachable; beyond it new events are dropped (counted)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_fields(envelope: Envelope, kind: str, actor: str) -> dict[str, Any]:
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
    def __init__(self, transport: RedisStreamsTransport) -> None:
        self._transport = transport
        self._stream = transport.keys.events
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-publisher")

    def emit(self, event: dict[str, Any]) -> None:
        if self._queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            if self.dropped % 10_000 == 1:
                log.warning("job events are not getting out; {} dropped so far", self.dropped)
            return
        event.setdefault("at", now_iso())
        self._queue.put_nowait(orjson.dumps(event))

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._transport.append_many(self._stream, EVENT_FIELD, batch)
            except RedisError as e:
                # progress events are advisory: losing some beats stalling the data plane
                log.warning("could not publish {} job events: {}", len(batch), e)
            finally:
                for _ in batch:
                    self._queue.task_done()
