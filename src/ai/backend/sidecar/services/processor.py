"""One envelope through one actor: validate, call the runtime, and turn the answer into an
:class:`Outcome` (successors, a delayed retry, or the error path) that is committed together with
the acknowledgement."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.base import HAPPY_END, summarize_validation_error
from ai.backend.common.dto.envelope_wire import WireEnvelope, decode_envelope
from ai.backend.common.dto.job_event import ErrorCode
from ai.backend.common.framing import FrameTooLarge
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.base import (
    DeadLetter,
    DelayedMessage,
    Delivery,
    FanOut,
    MessageTransport,
    Outcome,
)

from ..clients.runtime import ActorRuntime, RuntimeUnavailable
from ..metrics import SidecarMetrics
from .events import EventPublisher, event_fields
from .failures import CallFailure, Verdict, decide
from .replies import answered_here, failed_reply, succeeded_reply
from .retrying import RedisRetrier
from .routing import RoutingError, retry_envelope, successors, to_error_end

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


CANCEL_MARGIN: Final = 60.0
"""Seconds past a job's deadline for which its envelopes are still skipped after it failed
here (the gateway keeps cancelled jobs by the same rule)."""


def skip_for(deadline_at: datetime | None, now: datetime | None = None) -> float | None:
    """How long consumers must skip the envelopes of a job that ends early: until none can be
    in flight, its deadline plus :data:`CANCEL_MARGIN` (``None``, no deadline: the transport's
    default, a day)."""
    if deadline_at is None:
        return None
    remaining = (deadline_at - (now or datetime.now(UTC))).total_seconds()
    return max(remaining, 0.0) + CANCEL_MARGIN


def parse_envelope(delivery: Delivery) -> tuple[WireEnvelope | None, str]:
    """The delivery's envelope, or ``None`` and why it is not one."""
    try:
        return decode_envelope(delivery.body), ""
    except ValidationError as e:
        return None, summarize_validation_error(e)
    except ValueError as e:
        return None, str(e)


def bad_envelope_outcome(delivery: Delivery, reason: str) -> Outcome:
    """A message that is not an envelope cannot be routed: keep it in the DLQ, never process."""
    error = {"code": ErrorCode.INVALID_JSON.value, "message": f"not a valid envelope: {reason}"}
    return Outcome(dead_letters=[DeadLetter(delivery.queue, delivery.body, error)], acks=[delivery])


async def fail_and_dead_letter(
    transport: MessageTransport,
    retrier: RedisRetrier,
    delivery: Delivery,
    envelope: WireEnvelope,
    failure: CallFailure,
    *,
    actor: str,
    event: dict[str, Any],
) -> Outcome:
    """Give up on an envelope at ``actor``: its job fails at once through its end guard (the
    terminal event carries ``event``'s fields; its envelopes are skipped until its deadline has
    passed, see :func:`skip_for`), and the outcome keeps the envelope in the DLQ. Both steps are
    idempotent: a redelivery finds the job ended and adds the same dead letter. An envelope
    with ``events: off`` belongs to no job of record (KServe traffic): nothing is ended, the
    failed reply to its ``reply-to`` is the whole answer."""
    error = failure.to_error(actor=actor, attempt=envelope.attempt)
    if not envelope.events_off:
        keep = skip_for(envelope.deadline_at)
        await retrier.call(
            "failing a job",
            lambda: transport.fail_job(envelope.job_key, error, event, keep=keep),
        )
    outcome = Outcome(
        dead_letters=[DeadLetter(delivery.queue, delivery.body, error)], acks=[delivery]
    )
    if envelope.reply_to:  # whoever waits hears of it now, not at its timeout
        outcome.replies.append(failed_reply(envelope.reply_to, envelope, actor, error))
    return outcome


class ActorProcessor:
    def __init__(
        self,
        spec: ActorSpec,
        runtime: ActorRuntime,
        events: EventPublisher,
        metrics: SidecarMetrics,
        *,
        transport: MessageTransport,
        retrier: RedisRetrier,
    ) -> None:
        self.spec = spec
        self.transport = transport
        self.retrier = retrier
        self.runtime = runtime
        self.events = events
        self.metrics = metrics
        self.timeout = spec.timeout.total_seconds()

    async def handle(self, delivery: Delivery, envelope: WireEnvelope) -> Outcome:
        try:
            return await self._process(delivery, envelope)
        except RoutingError as e:
            log.error(
                "envelope {} of job {} cannot be routed: {}", envelope.id, envelope.job_key, e
            )
            failure = CallFailure(ErrorCode.PROCESSING_ERROR, str(e), reason="unroutable")
            return await self.abandon(delivery, envelope, failure)

    async def _process(self, delivery: Delivery, envelope: WireEnvelope) -> Outcome:
        actor = self.spec.name
        if envelope.route.current_actor != actor:
            failure = CallFailure(
                ErrorCode.ROUTE_MISMATCH,
                f"envelope is for {envelope.route.current_actor!r}, this is {actor!r}",
            )
            return self._fail(delivery, envelope, failure, dead_letter=False)
        if envelope.is_expired():
            failure = CallFailure(
                ErrorCode.TIMEOUT, "the job's deadline passed before the call", reason="timeout"
            )
            return self._fail(delivery, envelope, failure, dead_letter=False)
        running = 0
        if not envelope.events_off:
            running = self.events.emit(event_fields(envelope, "running", actor))
        answer, streamed = await self._call(delivery, envelope)
        if streamed or running:
            # this hop's events (running, partials, progress) reach bai:events before anything
            # its outcome writes: the next hop's events, or the job's end, come after them
            await self.events.written(max(running, streamed))
        if isinstance(answer, CallFailure):
            return self._after_failure(delivery, envelope, answer)
        self.metrics.processed.inc()
        children, fanned_out = successors(envelope, answer)
        gateway_id = answered_here(envelope)
        if (
            gateway_id is not None
            and not fanned_out
            and children[0].route.current_actor == HAPPY_END
        ):
            reply = succeeded_reply(gateway_id, envelope, actor, children[0].payload)
            return Outcome(replies=[reply], acks=[delivery])
        outcome = Outcome(
            publish=[(c.route.current_actor, c.to_json_bytes()) for c in children],
            acks=[delivery],
        )
        if fanned_out:
            outcome.fan_outs.append(
                FanOut(
                    envelope.job_key,
                    envelope.id,
                    len(children),
                    branch_of=envelope.parent_id if envelope.branch else None,
                    branch_index=envelope.branch[-1] if envelope.branch else 0,
                )
            )
        return outcome

    async def _call(
        self, delivery: Delivery, envelope: WireEnvelope
    ) -> tuple[Any | CallFailure, int]:
        """The handler's result, or how the call failed; and the number of the last event it
        streamed (partials, progress), 0 if none."""
        streamed = 0
        call_id = delivery.message_id
        events_off = envelope.events_off
        frame: dict[str, Any] = {
            "type": "call",
            "id": call_id,
            "payload": envelope.payload,
            "headers": envelope.headers,
            "route": {"actors": envelope.route.actors, "current": envelope.route.current},
            "job_id": envelope.job_key,
            "envelope_id": envelope.id,
            "attempt": envelope.attempt,
            "deadline_at": envelope.deadline_at.isoformat() if envelope.deadline_at else None,
        }
        if envelope.model is not None:
            frame["model"] = envelope.model.name
            frame["version"] = envelope.model.version
        timeout = self.timeout
        if envelope.deadline_at is not None:
            remaining = (envelope.deadline_at - datetime.now(UTC)).total_seconds()
            timeout = max(min(timeout, remaining), 0.001)

        def on_frame(message: dict[str, Any]) -> None:
            if events_off:
                return
            kind = message.get("type")
            event = event_fields(envelope, str(kind), self.spec.name)
            if kind == "partial":
                event["data"] = message.get("data")
            elif kind == "progress":
                event["data"] = {
                    k: message[k] for k in ("progress", "total", "message") if k in message
                }
            else:
                return
            nonlocal streamed
            streamed = self.events.emit(event)

        try:
            result = await self.runtime.call(call_id, frame, on_frame, timeout=timeout)
        except TimeoutError:
            failure = CallFailure(
                ErrorCode.TIMEOUT,
                f"the call did not finish within {timeout:g} s",
                reason="timeout",
            )
            return failure, streamed
        except RuntimeUnavailable as e:
            return CallFailure(ErrorCode.CONNECTION_ERROR, str(e)), streamed
        except FrameTooLarge as e:
            message = f"the call frame is too large: {e}"
            return CallFailure(ErrorCode.FRAME_TOO_LARGE, message), streamed
        if result.get("status") == "ok":
            return result.get("result"), streamed
        return CallFailure.from_result_frame(result), streamed

    async def abandon(
        self, delivery: Delivery, envelope: WireEnvelope, failure: CallFailure
    ) -> Outcome:
        """Give up on the envelope (a poison message, or one that cannot be routed): its job
        fails at once through its end guard, and the envelope is kept in the DLQ."""
        self.metrics.dead_lettered.inc()
        event = {"envelope_id": envelope.id, "actor": self.spec.name, "attempt": envelope.attempt}
        return await fail_and_dead_letter(
            self.transport,
            self.retrier,
            delivery,
            envelope,
            failure,
            actor=self.spec.name,
            event=event,
        )

    def _after_failure(
        self, delivery: Delivery, envelope: WireEnvelope, failure: CallFailure
    ) -> Outcome:
        self.metrics.failed.inc()
        decision = decide(failure, self.spec.retry, envelope.attempt)
        log.info(
            "envelope {} failed at attempt {} ({}: {}); {}",
            envelope.id,
            envelope.attempt,
            failure.code.value,
            failure.exc_type or "-",
            decision.verdict.value,
        )
        if decision.verdict is Verdict.RETRY:
            self.metrics.retried.inc()
            again = retry_envelope(envelope)
            due_at = time.time() + decision.delay
            return Outcome(
                delayed=[DelayedMessage(self.spec.name, again.to_json_bytes(), due_at)],
                acks=[delivery],
            )
        return self._fail(
            delivery,
            envelope,
            failure,
            dead_letter=decision.verdict is Verdict.EXHAUSTED,
            reason=decision.reason,
        )

    def _fail(
        self,
        delivery: Delivery,
        envelope: WireEnvelope,
        failure: CallFailure,
        *,
        dead_letter: bool,
        reason: str | None = None,
    ) -> Outcome:
        error = failure.to_error(actor=self.spec.name, attempt=envelope.attempt, reason=reason)
        gateway_id = answered_here(envelope)
        if gateway_id is not None:
            reply = failed_reply(gateway_id, envelope, self.spec.name, error)
            outcome = Outcome(replies=[reply], acks=[delivery])
        else:
            failed = to_error_end(envelope, error)
            outcome = Outcome(
                publish=[(failed.route.current_actor, failed.to_json_bytes())], acks=[delivery]
            )
        if dead_letter:
            self.metrics.dead_lettered.inc()
            outcome.dead_letters.append(DeadLetter(delivery.queue, delivery.body, error))
        return outcome
