"""The jobs REST API (DESIGN.md §5, §5a): tools, jobs, and a job's events as SSE."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from ai.backend.common.dto.base import validate_request
from ai.backend.common.dto.gateway_api import (
    JobCreateRequest,
    JobHandle,
    JobInfo,
    ToolCallRequest,
    ToolInfo,
)
from ai.backend.common.dto.job_event import JobStatus
from ai.backend.common.json import dumps
from ai.backend.common.web import json_response, read_body

from ..errors import InvalidArgument
from .context import caller, context

MAX_WAIT = 300.0
MAX_LIMIT = 500
DEFAULT_LIMIT = 50


def _query_float(request: web.Request, name: str, *, maximum: float) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"{name}: expected a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or value > maximum:
        raise InvalidArgument(f"{name}: must be between 0 and {maximum:g} seconds")
    return value


def handle_of(request: web.Request, job: JobInfo) -> JobHandle:
    base = f"{request.scheme}://{request.host}/v1/jobs/{job.id}"
    return JobHandle(job_id=job.id, status=job.status, status_url=base, stream_url=f"{base}/events")


def _wait_of(request: web.Request) -> float | None:
    """``?wait=SECONDS``, checked before a job is created (a bad value creates nothing)."""
    return _query_float(request, "wait", maximum=MAX_WAIT)


async def _answer(request: web.Request, job: JobInfo, wait: float | None) -> web.Response:
    """202 with the job's handle, or, with ``wait``, 200 with the job once it ended within
    that time."""
    if wait:
        job = await context(request).jobs.wait(
            job.id, caller=caller(request), timeout=wait, known=job
        )
        if job.status.is_terminal:
            return json_response(job.model_dump(mode="json"))
    return json_response(handle_of(request, job).model_dump(mode="json"), status=202)


def tool_info(spec: Any) -> ToolInfo:
    return ToolInfo(
        name=spec.name,
        description=spec.description,
        input_schema=spec.input_schema(),
        route=list(spec.route),
        progress=spec.progress,
        timeout_seconds=spec.timeout.total_seconds(),
        wait_seconds=None if spec.wait is None else spec.wait.total_seconds(),
    )


async def list_tools(request: web.Request) -> web.Response:
    items = [tool_info(spec).model_dump(mode="json") for spec in context(request).tools]
    return json_response({"items": items, "next_cursor": None})


async def call_tool(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    context(request).tools.get(name)  # 404 before reading the body
    wait = _wait_of(request)
    body = validate_request(ToolCallRequest, await read_body(request), error=InvalidArgument)
    job = await context(request).jobs.call_tool(
        name, body.arguments, timeout=body.timeout, caller=caller(request)
    )
    return await _answer(request, job, wait)


async def create_job(request: web.Request) -> web.Response:
    wait = _wait_of(request)
    body = validate_request(JobCreateRequest, await read_body(request), error=InvalidArgument)
    job = await context(request).jobs.create(body, caller=caller(request))
    return await _answer(request, job, wait)


async def list_jobs(request: web.Request) -> web.Response:
    raw_status = request.query.get("status")
    try:
        status = JobStatus(raw_status) if raw_status else None
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise InvalidArgument(f"status: expected one of {names}") from None
    try:
        limit = int(request.query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise InvalidArgument("limit: expected an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit: must be between 1 and {MAX_LIMIT}")
    page = await context(request).jobs.list(
        caller=caller(request), status=status, limit=limit, cursor=request.query.get("cursor")
    )
    items = [job.model_dump(mode="json") for job in page.items]
    return json_response({"items": items, "next_cursor": page.next_cursor})


async def get_job(request: web.Request) -> web.Response:
    job = await context(request).jobs.get(request.match_info["job_id"], caller=caller(request))
    return json_response(job.model_dump(mode="json"))


async def cancel_job(request: web.Request) -> web.Response:
    job = await context(request).jobs.cancel(
        request.match_info["job_id"], caller=caller(request), reason="cancelled by the caller"
    )
    return json_response(job.model_dump(mode="json"))


def _resume_point(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    try:
        after = int(raw)
    except ValueError:
        raise InvalidArgument(
            f"Last-Event-ID: expected an event id (a number), got {raw!r}"
        ) from None
    if after < 0:
        raise InvalidArgument("Last-Event-ID: must not be negative")
    return after


async def job_events(request: web.Request) -> web.StreamResponse:
    """SSE: ``id: <seq>``, ``event: <kind>``, ``data: <job event JSON>``; history, then live,
    closing after the terminal event; ``: heartbeat`` comments while nothing happens."""
    ctx = context(request)
    job_id = request.match_info["job_id"]
    after = _resume_point(request)
    await ctx.jobs.get(job_id, caller=caller(request))  # 404 before the stream starts
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    heartbeat = ctx.config.jobs.heartbeat.total_seconds()
    try:
        async for event in ctx.jobs.events(job_id, after=after, heartbeat=heartbeat):
            if event is None:
                await response.write(b": heartbeat\n\n")
                continue
            frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (
                event.seq,
                event.kind.value.encode(),
                dumps(event.data),
            )
            await response.write(frame)
    except (ConnectionResetError, ConnectionError):
        return response  # the client went away
    await response.write_eof()
    return response


def add_job_routes(app: web.Application) -> None:
    app.router.add_get("/v1/tools", list_tools)
    app.router.add_post("/v1/tools/{name}/call", call_tool)
    app.router.add_post("/v1/jobs", create_job)
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_get("/v1/jobs/{job_id}", get_job)
    app.router.add_post("/v1/jobs/{job_id}/cancel", cancel_job)
    app.router.add_get("/v1/jobs/{job_id}/events", job_events)
