"""Who retries what (DESIGN.md §4.3), as a pure decision."""

from __future__ import annotations

import pytest

from ai.backend.common.dto.actor_spec import RetryPolicy
from ai.backend.common.dto.job_event import ErrorCode
from ai.backend.sidecar.services.failures import CallFailure, Decision, Verdict, decide

POLICY = RetryPolicy.model_validate(
    {"max_attempts": 3, "base": "1s", "max": "10s", "non_retryable": ["ValueError"]}
)


def failure(code: ErrorCode, *mro: str, retry_after: float | None = None) -> CallFailure:
    return CallFailure(
        code, "m", exc_type=mro[0] if mro else None, exc_mro=mro, retry_after=retry_after
    )


@pytest.mark.parametrize(
    ("failed", "attempt", "expected"),
    [
        (
            failure(ErrorCode.PROCESSING_ERROR, "RuntimeError", "Exception"),
            1,
            Decision(Verdict.RETRY, 1.0),
        ),
        (
            failure(ErrorCode.PROCESSING_ERROR, "RuntimeError", "Exception"),
            2,
            Decision(Verdict.RETRY, 2.0),
        ),
        (
            failure(ErrorCode.PROCESSING_ERROR, "RuntimeError", "Exception"),
            3,
            Decision(Verdict.EXHAUSTED, reason="max_retries"),
        ),
        (
            failure(ErrorCode.PROCESSING_ERROR, "KeyError", "LookupError", "Exception"),
            1,
            Decision(Verdict.RETRY, 1.0),
        ),
        (
            failure(ErrorCode.PROCESSING_ERROR, "NotRetryable", "ValueError", "Exception"),
            1,
            Decision(Verdict.FAIL, reason="non_retryable"),
        ),
        (failure(ErrorCode.TIMEOUT), 1, Decision(Verdict.RETRY, 1.0)),
        (
            failure(ErrorCode.OOM_ERROR, "MemoryError", retry_after=30),
            1,
            Decision(Verdict.RETRY, 30.0),
        ),
        (failure(ErrorCode.INVALID_JSON), 1, Decision(Verdict.FAIL, reason="invalid_json")),
        (failure(ErrorCode.FRAME_TOO_LARGE), 1, Decision(Verdict.FAIL, reason="frame_too_large")),
        (failure(ErrorCode.ROUTE_MISMATCH), 1, Decision(Verdict.FAIL, reason="route_mismatch")),
    ],
)
def test_decisions(failed: CallFailure, attempt: int, expected: Decision) -> None:
    assert decide(failed, POLICY, attempt) == expected


def test_without_retries_a_failure_ends_without_dlq() -> None:
    no_retry = RetryPolicy()
    assert decide(failure(ErrorCode.PROCESSING_ERROR, "RuntimeError"), no_retry, 1) == Decision(
        Verdict.FAIL, reason="processing_error"
    )


def test_recoverable_errors_get_at_least_three_attempts() -> None:
    no_retry = RetryPolicy()
    oom = failure(ErrorCode.CUDA_OOM_ERROR, "OutOfMemoryError", retry_after=60)
    assert decide(oom, no_retry, 1) == Decision(Verdict.RETRY, 60.0)
    assert decide(oom, no_retry, 2) == Decision(Verdict.RETRY, 60.0)
    assert decide(oom, no_retry, 3) == Decision(Verdict.EXHAUSTED, reason="max_retries")


def test_no_retry_waits_longer_than_ten_minutes() -> None:
    policy = RetryPolicy.model_validate({"max_attempts": 5, "base": "10m", "max": "10m"})
    stuck = failure(ErrorCode.OOM_ERROR, "MemoryError", retry_after=86400)  # a runtime's hint
    assert decide(stuck, policy, 1) == Decision(Verdict.RETRY, 600.0)


def test_a_retry_policy_may_not_wait_beyond_ten_minutes() -> None:
    with pytest.raises(ValueError, match="retry.max: at most 10m"):
        RetryPolicy.model_validate({"max": "11m"})


def test_failure_from_a_result_frame() -> None:
    frame = {
        "type": "result",
        "id": "c",
        "status": "error",
        "error": "weird_code",
        "message": "boom",
        "exc_type": "ValueError",
        "exc_mro": ["ValueError", "Exception"],
        "retry_after": 5,
    }
    parsed = CallFailure.from_result_frame(frame)
    assert parsed == CallFailure(
        ErrorCode.PROCESSING_ERROR, "boom", "ValueError", ("ValueError", "Exception"), None, 5.0
    )
