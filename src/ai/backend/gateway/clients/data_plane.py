"""What the gateway writes to the data plane: a job's first envelope, and the end of a job it
cancels or fails (through the job's end guard, so the first terminal write wins there too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ai.backend.common.transport.base import JobEndResult
from ai.backend.common.transport.redis_streams import MESSAGE_FIELD, RedisStreamsTransport


class DataPlaneClient:
    def __init__(self, transport: RedisStreamsTransport) -> None:
        self._transport = transport

    @property
    def transport(self) -> RedisStreamsTransport:
        return self._transport

    async def publish(self, envelopes: Sequence[tuple[str, bytes]]) -> None:
        """Append each ``(actor, envelope JSON)`` to the actor's stream, in one round trip."""
        if not envelopes:
            return
        keys = self._transport.keys
        async with self._transport.redis.pipeline(transaction=False) as pipe:
            for actor, body in envelopes:
                pipe.xadd(keys.actor_stream(actor), {MESSAGE_FIELD: body})
            await pipe.execute()

    async def cancel(self, job_id: str, reason: str, *, keep: float | None) -> JobEndResult:
        """End the job as cancelled; sidecars skip its envelopes for ``keep`` seconds."""
        return await self._transport.cancel_job(job_id, reason, keep=keep)

    async def fail(
        self,
        job_id: str,
        error: Mapping[str, Any],
        event: Mapping[str, Any],
        *,
        keep: float | None,
    ) -> JobEndResult:
        return await self._transport.fail_job(job_id, error, event, keep=keep)
