"""Result types of the SDK beyond the shared DTOs (``ai.backend.common.dto``), and ``LogLine``
re-exported from them; readers accept fields added by newer servers."""

from __future__ import annotations

from ai.backend.common.dto.gateway_api import JobInfo
from ai.backend.common.dto.manager_api import LogLine, ResponseModel

__all__ = ["JobPage", "LogLine"]


class JobPage(ResponseModel):
    """One page of ``GET /v1/jobs`` (newest first); pass ``next_cursor`` back for the next."""

    items: list[JobInfo]
    next_cursor: str | None = None
