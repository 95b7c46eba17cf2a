"""Job events (DESIGN.md §4.1a), carried in the stream ``bai:events`` under the field ``ev``."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, Field, model_validator

from .base import StrictModel


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_JOB_STATUSES


TERMINAL_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobEventKind(StrEnum):
    RUNNING = "running"
    PROGRESS = "progress"
    PARTIAL = "partial"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobEventKind.SUCCEEDED, JobEventKind.FAILED, JobEventKind.CANCELLED)


class ErrorCode(StrEnum):
    """Error codes of the frame protocol and the data plane (DESIGN.md §4.3)."""

    PROCESSING_ERROR = "processing_error"
    OOM_ERROR = "oom_error"
    CUDA_OOM_ERROR = "cuda_oom_error"
    INVALID_JSON = "invalid_json"
    FRAME_TOO_LARGE = "frame_too_large"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    ROUTE_MISMATCH = "route_mismatch"


class JobError(StrictModel):
    code: ErrorCode
    type: str | None = None
    message: str
    traceback: str | None = None
    reason: str | None = None
    actor: str | None = None  # where it failed
    attempt: int | None = Field(default=None, ge=1)


class JobEvent(StrictModel):
    job_id: str | None = None
    envelope_id: str | None = None
    kind: JobEventKind
    actor: str | None = None
    step: int | None = Field(default=None, ge=1)
    total: int | None = Field(default=None, ge=1)
    attempt: int | None = Field(default=None, ge=1)
    data: Any = None
    result: Any = None
    error: JobError | None = None
    at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="after")
    def _failed_has_error(self) -> JobEvent:
        if self.kind is JobEventKind.FAILED and self.error is None:
            raise ValueError("a failed event must carry an error")
        if self.error is not None and self.kind is not JobEventKind.FAILED:
            raise ValueError(f"a {self.kind} event must not carry an error")
        return self

    def to_json_bytes(self) -> bytes:
        """Only the fields that apply are present (None fields are left out)."""
        return self.model_dump_json(exclude_none=True).encode()
