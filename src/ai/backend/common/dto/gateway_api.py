"""Request and response bodies of the gateway's REST API (DESIGN.md §5, §5a), shared by the
gateway and the client SDK."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, model_validator

from ..types.units import Duration
from .base import StrictModel, UserActorName
from .job_event import JobError, JobEventKind, JobStatus
from .manager_api import ResponseModel

# below a day: a job's branch state and end guard in Redis (JOB_STATE_TTL_SECONDS,
# CANCEL_TTL_SECONDS) must outlive it, so that it ends exactly once
MAX_JOB_TIMEOUT = timedelta(hours=23)


class JobCreateRequest(StrictModel):
    """``POST /v1/jobs``: a job by tool (arguments validated against its schema) or by an
    explicit route of actors (arguments are the first actor's payload)."""

    tool: str | None = Field(default=None, min_length=1, max_length=128)
    route: list[UserActorName] | None = Field(default=None, min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _tool_or_route(self) -> JobCreateRequest:
        if (self.tool is None) == (self.route is None):
            raise ValueError("give exactly one of tool and route")
        if self.timeout is not None and not timedelta(0) < self.timeout <= MAX_JOB_TIMEOUT:
            raise ValueError("timeout: must be above 0 and at most 23 hours")
        return self


class ToolCallRequest(StrictModel):
    """``POST /v1/tools/{name}/call``."""

    arguments: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _timeout_in_range(self) -> ToolCallRequest:
        if self.timeout is not None and not timedelta(0) < self.timeout <= MAX_JOB_TIMEOUT:
            raise ValueError("timeout: must be above 0 and at most 23 hours")
        return self


class JobInfo(ResponseModel):
    id: str
    status: JobStatus
    tool: str | None
    route: list[str]
    arguments: dict[str, Any]
    result: Any = None
    error: JobError | dict[str, Any] | None = None
    progress: float | None = None
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime | None = None
    last_seq: int = Field(
        default=0,
        description="the number of the job's newest stored event (0: none yet): its events"
        " stream has replayed the whole history once it sent this id",
    )


class JobHandle(ResponseModel):
    """What a call that has not finished answers (202)."""

    job_id: str
    status: JobStatus
    status_url: str
    stream_url: str


class StoredJobEvent(ResponseModel):
    """One event of a job's history: ``seq`` is the SSE ``id:``; ``data`` is the job event
    (DESIGN.md §4.1a) as it was applied."""

    job_id: str
    seq: int
    kind: JobEventKind
    data: dict[str, Any]
    at: datetime


class ToolInfo(ResponseModel):
    name: str
    description: str
    input_schema: dict[str, Any]
    route: list[str]
    progress: bool
    timeout_seconds: float
    wait_seconds: float | None = None


class ApiTokenCreateRequest(StrictModel):
    """``POST /v1/admin/tokens`` (manager): a Bearer token for the gateway, for a keypair."""

    access_key: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, max_length=128)
    expires_in: Duration | None = None


class ApiTokenInfo(ResponseModel):
    id: str
    access_key: str
    name: str | None = None
    created_at: datetime
    expires_at: datetime | None = None


class ApiTokenCreated(ApiTokenInfo):
    """Shown once: only a hash of ``token`` is stored."""

    token: str
