"""Tools (gateway ``/v1/tools``): the named, schema-checked entry points of routes."""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any, Final

from ai.backend.common.dto.gateway_api import JobHandle, JobInfo, ToolInfo

from ..transport import ServiceEndpoint, parse_as, parse_items, path_segment
from .jobs import duration_text

# how much longer than the server's wait a call may take to answer
WAIT_MARGIN: Final = 30.0


class Tools:
    def __init__(self, gateway: ServiceEndpoint) -> None:
        self._gateway = gateway

    async def list(self) -> builtins.list[ToolInfo]:
        answer = await self._gateway.get("/v1/tools")
        return parse_items(ToolInfo, answer, what="tool list")

    async def call(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        wait: float | None = None,
        timeout: str | timedelta | None = None,
    ) -> JobInfo | JobHandle:
        """Start the tool's job. With ``wait`` (seconds, at most 300) the gateway waits that
        long for it: the finished :class:`JobInfo` when it ended in time, else (and without
        ``wait``) the :class:`JobHandle` to follow it with ``jobs.get`` / ``jobs.events``.
        ``timeout`` bounds the job itself."""
        body: dict[str, Any] = {"arguments": arguments or {}}
        if timeout is not None:
            body["timeout"] = duration_text(timeout)
        status, answer = await self._gateway.call(
            "POST",
            f"/v1/tools/{path_segment(name)}/call",
            query={"wait": wait},
            body=body,
            timeout=None if wait is None else self._gateway.timeout + wait + WAIT_MARGIN,
        )
        if status == 200:
            return parse_as(JobInfo, answer, what="job")
        return parse_as(JobHandle, answer, what="job handle")
