"""Result types of the SDK that the shared DTOs (``ai.backend.common.dto``) do not have yet.
Both describe server responses; readers accept fields added by newer servers."""

from __future__ import annotations

from ai.backend.common.dto.gateway_api import JobInfo
from ai.backend.common.dto.manager_api import ResponseModel


class JobPage(ResponseModel):
    """One page of ``GET /v1/jobs`` (newest first); pass ``next_cursor`` back for the next."""

    items: list[JobInfo]
    next_cursor: str | None = None


class LogLine(ResponseModel):
    """One line of a replica's log (``GET /v1/actors/{name}/logs``, NDJSON): ``process`` is
    ``runtime`` or ``sidecar``; ``line`` has no trailing newline."""

    replica_id: str
    process: str
    line: str
