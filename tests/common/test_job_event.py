from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from ai.backend.common.dto.job_event import ErrorCode, JobError, JobEvent, JobEventKind, JobStatus


def test_only_the_fields_that_apply_are_serialized() -> None:
    event = JobEvent(
        job_id="j1",
        envelope_id="e1",
        kind=JobEventKind.RUNNING,
        actor="doubler",
        step=1,
        total=2,
        attempt=1,
    )
    data = json.loads(event.to_json_bytes())
    assert set(data) == {"job_id", "envelope_id", "kind", "actor", "step", "total", "attempt", "at"}
    assert data["kind"] == "running"
    assert data["at"].endswith("Z")


def test_failed_events_carry_a_structured_error() -> None:
    error = JobError(
        code=ErrorCode.PROCESSING_ERROR,
        type="ValueError",
        message="bad",
        traceback="Traceback…",
        reason="max_retries",
    )
    event = JobEvent(job_id="j1", kind=JobEventKind.FAILED, error=error)
    again = JobEvent.model_validate_json(event.to_json_bytes())
    assert again == event
    assert again.kind.is_terminal


def test_a_failed_event_without_error_is_rejected() -> None:
    with pytest.raises(ValidationError, match="a failed event must carry an error"):
        JobEvent(job_id="j1", kind=JobEventKind.FAILED)


def test_only_failed_events_carry_errors() -> None:
    with pytest.raises(ValidationError, match="a succeeded event must not carry an error"):
        JobEvent.model_validate(
            {"kind": "succeeded", "error": {"code": "timeout", "message": "late"}}
        )


def test_unknown_error_codes_and_kinds_are_rejected() -> None:
    with pytest.raises(ValidationError, match="error.code"):
        JobEvent.model_validate({"kind": "failed", "error": {"code": "oops", "message": "m"}})
    with pytest.raises(ValidationError, match="kind"):
        JobEvent.model_validate({"kind": "exploded"})


def test_terminal_statuses() -> None:
    assert [s.value for s in JobStatus if s.is_terminal] == ["succeeded", "failed", "cancelled"]
    assert [k.value for k in JobEventKind if k.is_terminal] == ["succeeded", "failed", "cancelled"]
