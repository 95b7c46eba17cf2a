"""The crew: ``happy-end`` and ``error-end`` end a branch of a job (DESIGN.md §4.1).

Each ending branch is recorded once (by envelope id, whichever crew member sees it first) and
closes its branch; the branch that closes the last one writes the job's single terminal event:
``succeeded`` with the final payload (or ``{"results": [...]}`` ordered by branch after a
fan-out) or ``failed`` with the first failed branch's error. The transport does each branch in
one atomic step with its acknowledgement, through the job's end guard, so a duplicate, a branch
ending after the job was cancelled, or one ending after the job's end never writes a second
terminal event.
"""

from __future__ import annotations

import logging
from typing import Any

from ai.backend.common import json as wire_json
from ai.backend.common.aio import MicroBatcher
from ai.backend.common.dto.base import ERROR_END, HAPPY_END
from ai.backend.common.dto.envelope_wire import WireEnvelope
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.base import (
    BranchEnd,
    BranchEnded,
    Delivery,
    MessageTransport,
    Outcome,
)
from ai.backend.common.transport.redis_streams import now_iso

from .failures import CallFailure
from .processor import fail_and_dead_letter
from .retrying import RedisRetrier

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

DEFAULT_ERROR = {"code": "processing_error", "message": "the branch failed"}


class CrewMember:
    """Processes deliveries of ``happy-end`` or ``error-end``. The branches that arrive in the
    same event-loop turn are ended in one transport call."""

    def __init__(self, name: str, transport: MessageTransport, retrier: RedisRetrier) -> None:
        if name not in (HAPPY_END, ERROR_END):
            raise ValueError(f"{name!r} is not a crew actor")
        self.name = name
        self._transport = transport
        self._retrier = retrier
        self._batcher: MicroBatcher[BranchEnd, BranchEnded] = MicroBatcher(
            self._end_branches, isolate_when=lambda e: not transport.is_transient(e)
        )

    async def handle(self, delivery: Delivery, envelope: WireEnvelope) -> Outcome:
        """End the envelope's branch; the transport acknowledges the delivery itself. Retried
        while Redis is away: ending a branch twice is harmless."""
        end = self.branch_end(delivery, envelope)
        await self._retrier.call("ending a branch", lambda: self._batcher.submit(end))
        return Outcome()

    async def abandon(
        self, delivery: Delivery, envelope: WireEnvelope, failure: CallFailure
    ) -> Outcome:
        """A branch that could not be ended (a poison message): its job fails (through its end
        guard) and the envelope is kept in the crew's DLQ."""
        event = {"envelope_id": envelope.id, "actor": self.name}
        return await fail_and_dead_letter(
            self._transport,
            self._retrier,
            delivery,
            envelope,
            failure,
            actor=self.name,
            event=event,
        )

    def branch_end(self, delivery: Delivery, envelope: WireEnvelope) -> BranchEnd:
        event: dict[str, Any] = {
            "job_id": envelope.job_key,
            "envelope_id": envelope.id,
            "actor": self.name,
            "at": now_iso(),
        }
        succeeded = self.name == HAPPY_END
        if not succeeded and envelope.error and envelope.error.get("attempt"):
            event["attempt"] = envelope.error["attempt"]
        outcome = envelope.payload if succeeded else (envelope.error or DEFAULT_ERROR)
        return BranchEnd(
            delivery=delivery,
            job_id=envelope.job_key,
            envelope_id=envelope.id,
            branch=tuple(envelope.branch),
            succeeded=succeeded,
            outcome=wire_json.dumps(outcome),
            event=event,
            parent_id=envelope.parent_id,
            reply_to=envelope.reply_to,
        )

    async def _end_branches(self, ends: list[BranchEnd]) -> list[BranchEnded]:
        results = await self._transport.end_branches(ends)
        for end, result in zip(ends, results, strict=True):
            if result is BranchEnded.DUPLICATE:
                log.info("branch {} of job {} had ended already", end.envelope_id, end.job_id)
            elif result is BranchEnded.AFTER_JOB_END:
                log.info("branch {} ended after its job {} had ended", end.envelope_id, end.job_id)
            elif result is BranchEnded.JOB_STATE_LOST:
                log.warning(
                    "job {} failed: its state was lost before branch {} ended",
                    end.job_id,
                    end.envelope_id,
                )
        return results
