"""What happens to a failed call: retry later, or end the branch (and maybe dead-letter it).

The rules of DESIGN.md §4.3: classes in ``retry.non_retryable`` (matched along the exception's
MRO by name) and the codes ``invalid_json``, ``frame_too_large``, ``route_mismatch`` are never
retried; recoverable codes are retried up to ``max(3, max_attempts)`` times, waiting at least the
runtime's ``retry_after``; ``processing_error`` and ``timeout`` while ``attempt < max_attempts``.
A failure whose retries ran out also goes to the actor's DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from ai.backend.common.dto.actor_spec import MAX_RETRY_DELAY as RETRY_DELAY_LIMIT
from ai.backend.common.dto.actor_spec import RetryPolicy
from ai.backend.common.dto.job_event import ErrorCode

NEVER_RETRIED = frozenset(
    {ErrorCode.INVALID_JSON, ErrorCode.FRAME_TOO_LARGE, ErrorCode.ROUTE_MISMATCH}
)
RECOVERABLE = frozenset({ErrorCode.OOM_ERROR, ErrorCode.CUDA_OOM_ERROR, ErrorCode.CONNECTION_ERROR})
MIN_RECOVERABLE_ATTEMPTS = 3
# no retry waits longer (the runtime's retry_after included): a retried envelope must arrive
# well within the time a job's end is remembered (JOB_END_TTL_SECONDS)
MAX_RETRY_DELAY = RETRY_DELAY_LIMIT.total_seconds()


@dataclass(frozen=True)
class CallFailure:
    """A failed call, as the runtime (or the sidecar itself) reported it."""

    code: ErrorCode
    message: str
    exc_type: str | None = None
    exc_mro: tuple[str, ...] = ()
    traceback: str | None = None
    retry_after: float | None = None
    reason: str | None = None

    @classmethod
    def from_result_frame(cls, frame: dict[str, Any]) -> CallFailure:
        try:
            code = ErrorCode(str(frame.get("error")))
        except ValueError:
            code = ErrorCode.PROCESSING_ERROR
        retry_after = frame.get("retry_after")
        return cls(
            code=code,
            message=str(frame.get("message") or code.value),
            exc_type=frame.get("exc_type"),
            exc_mro=tuple(
                frame.get("exc_mro") or ([frame["exc_type"]] if frame.get("exc_type") else [])
            ),
            traceback=frame.get("traceback"),
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        )

    @classmethod
    def delivery_limit(cls, deliveries: int, limit: int) -> CallFailure:
        """An envelope whose stream entry was delivered ``deliveries`` times without an outcome."""
        return cls(
            ErrorCode.PROCESSING_ERROR,
            f"delivered {deliveries} times without an outcome (retry.max_deliveries is {limit})",
            reason="delivery_limit",
        )

    def to_error(self, *, actor: str, attempt: int, reason: str | None = None) -> dict[str, Any]:
        """The ``error`` of the envelope sent to ``error-end`` (a ``JobError``); the reason
        defaults to the failure's own, else its code."""
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.exc_type:
            error["type"] = self.exc_type
        if self.traceback:
            error["traceback"] = self.traceback
        error["reason"] = reason or self.reason or self.code.value
        error["actor"] = actor
        error["attempt"] = attempt
        return error


class Verdict(Enum):
    RETRY = "retry"
    FAIL = "fail"  # not retryable: error-end only
    EXHAUSTED = "exhausted"  # retries ran out: error-end and the DLQ


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay: float = 0.0
    reason: str | None = None


def decide(failure: CallFailure, policy: RetryPolicy, attempt: int) -> Decision:
    if failure.code in NEVER_RETRIED:
        return Decision(Verdict.FAIL, reason=failure.code.value)
    non_retryable = set(policy.non_retryable)
    if non_retryable and non_retryable.intersection(failure.exc_mro):
        return Decision(Verdict.FAIL, reason="non_retryable")
    if failure.code in RECOVERABLE:
        limit = max(MIN_RECOVERABLE_ATTEMPTS, policy.max_attempts)
    else:
        limit = policy.max_attempts
    if attempt >= limit:
        if limit == 1:
            return Decision(Verdict.FAIL, reason=failure.reason or failure.code.value)
        return Decision(Verdict.EXHAUSTED, reason="max_retries")
    delay = policy.delay_before(attempt + 1).total_seconds()
    if failure.retry_after is not None:
        delay = max(delay, failure.retry_after)
    return Decision(Verdict.RETRY, delay=min(delay, MAX_RETRY_DELAY))
