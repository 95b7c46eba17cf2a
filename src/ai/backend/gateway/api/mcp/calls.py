"""``tools/call``: a configured tool starts a job and answers with its result, or with the job's
handle when it has not ended within the tool's ``wait`` (default: its ``timeout``); the built-in
``get_job`` and ``cancel_job`` read and cancel jobs.

With a ``progressToken`` the answer is an SSE stream: ``notifications/progress`` as the job's
events come (:class:`~.results.ProgressTracker`), then the result. Cancellation: in the modern
era a client that goes away (closes the response) cancels the job; in the legacy era
``notifications/cancelled`` does (:mod:`.sessions`), and a client that goes away leaves the job
running for ``get_job``. A gateway that is stopping cancels no job: the calls waiting for one
answer with its handle at once (:attr:`.exchange.McpState.stopping`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, Final, TypeVar

from aiohttp import web

from ai.backend.common.dto.gateway_api import JobInfo
from ai.backend.common.dto.tool_spec import ToolSpec
from ai.backend.common.errors import BackendError
from ai.backend.common.json import dumps_str
from ai.backend.common.log import BraceStyleAdapter

from ...errors import Conflict, InvalidArgument, JobNotFound, NotFound, ToolNotFound
from ...services.jobs import Caller, JobService
from ...services.mcp_sessions import Attached
from ..jobs import handle_of
from .exchange import EventStream, Exchange
from .protocol import INTERNAL_ERROR, INVALID_PARAMS, McpError, error_message, notification_message
from .results import (
    BUILTIN_TOOL_NAMES,
    GET_JOB,
    ProgressTracker,
    error_result,
    job_json,
    job_result,
    text_result,
)

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

T = TypeVar("T")

DISCONNECT_POLL: Final = 0.2
"""Seconds between checks whether the client of a waiting call has gone."""
KEEPALIVE: Final = 15.0
"""Seconds without progress after which a streamed call sends an SSE comment (proxies)."""
MAX_JOB_ID_LENGTH: Final = 128
FINISH_TIMEOUT: Final = 1.0
"""Seconds a stream cut short by the gateway's shutdown may take to send the job's handle."""


class _ClientGone(Exception):
    pass


class _ServerStopping(Exception):
    pass


def _progress_token(params: dict[str, Any]) -> str | int | None:
    meta = params.get("_meta")
    if not isinstance(meta, dict) or meta.get("progressToken") is None:
        return None
    token = meta["progressToken"]
    if not isinstance(token, str | int) or isinstance(token, bool):
        raise McpError(INVALID_PARAMS, "params._meta.progressToken: expected a string or integer")
    return token


async def call_tool(exchange: Exchange, params: dict[str, Any]) -> web.StreamResponse:
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise McpError(INVALID_PARAMS, "params.name: expected the name of a tool")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    token = _progress_token(params)
    if name in BUILTIN_TOOL_NAMES:
        return exchange.reply(await _builtin(exchange, name, arguments))
    tools = exchange.context.tools
    try:
        spec = tools.get(name)
        tools.validate_arguments(name, arguments)
    except ToolNotFound:
        raise McpError(INVALID_PARAMS, f"Unknown tool: {name}") from None
    except InvalidArgument as e:
        return exchange.reply(error_result(e.message))
    job = await _start(exchange, spec, arguments)
    if isinstance(job, dict):
        return exchange.reply(job)
    wait = (spec.wait or spec.timeout).total_seconds()
    try:
        if token is not None and exchange.accepts_event_stream():
            return await _stream(exchange, spec, job, token, wait)
        return await _answer(exchange, job, wait)
    finally:
        if exchange.session is not None:
            await _forget_request(exchange)


async def _start(exchange: Exchange, spec: ToolSpec, arguments: Any) -> JobInfo | dict[str, Any]:
    """The call's job, or the ``isError`` result that answers instead: arguments the job
    service refuses, or a legacy ``notifications/cancelled`` that came before the job existed
    (the job is then cancelled as soon as it exists)."""
    session = exchange.session
    sessions = exchange.state.sessions
    if session is not None and sessions is not None:
        await sessions.begin_request(session.id, exchange.request_id)
    try:
        job = await exchange.context.jobs.call_tool(
            spec.name, arguments, timeout=None, caller=exchange.caller
        )
    except BackendError as e:
        await _forget_request(exchange)
        if isinstance(e, ToolNotFound):
            raise McpError(INVALID_PARAMS, f"Unknown tool: {spec.name}") from None
        if e.http_status < 500:
            return error_result(e.message)
        raise McpError(INTERNAL_ERROR, e.message) from None
    except Exception:
        await _forget_request(exchange)
        raise
    if session is None or sessions is None:
        return job
    try:
        attached = await sessions.attach_job(session.id, exchange.request_id, job.id)
    except Exception:
        # the job runs: answer its handle (a retry would start a second one), unbound from
        # the request, so notifications/cancelled cannot reach it (cancel_job can)
        log.warning(
            "could not bind job {} to MCP request {}; answering with its handle",
            job.id,
            exchange.request_id,
            exc_info=True,
        )
        await _forget_request(exchange)
        return job_result(job, _handle(exchange, job))
    if attached is Attached.CANCELLED:
        reason = "cancelled by the client (notifications/cancelled)"
        await cancel_job(exchange.context.jobs, exchange.caller, job.id, reason)
        return error_result("the call was cancelled by the client")
    if attached is Attached.GONE:
        log.info(
            "MCP session {} ended while request {} started job {}; the job runs on",
            session.id,
            exchange.request_id,
            job.id,
        )
    return job


async def _forget_request(exchange: Exchange) -> None:
    sessions = exchange.state.sessions
    if exchange.session is None or sessions is None:
        return
    try:
        await sessions.end_request(exchange.session.id, exchange.request_id)
    except Exception:
        log.warning("could not forget MCP request {}", exchange.request_id, exc_info=True)


async def cancel_job(jobs: JobService, caller: Caller, job_id: str, reason: str) -> None:
    """Cancel a call's job; one that has ended meanwhile is left as it is."""
    try:
        await jobs.cancel(job_id, caller=caller, reason=reason)
    except (Conflict, NotFound):
        pass
    except Exception:
        log.exception("could not cancel job {} ({})", job_id, reason)
    else:
        log.info("job {} cancelled: {}", job_id, reason)


def _client_went_away(exchange: Exchange, job_id: str) -> Coroutine[Any, Any, None]:
    return cancel_job(exchange.context.jobs, exchange.caller, job_id, "the MCP client went away")


def _cancels_on_disconnect(exchange: Exchange, job_id: str) -> bool:
    """Whether a modern call whose connection ended cancels its job: not when the gateway
    itself is stopping (it cut the connection, not the client)."""
    if not exchange.modern:
        return False
    if exchange.state.stopping.is_set():
        log.info("job {} left running: the gateway is stopping", job_id)
        return False
    return True


def _cancel_in_background(exchange: Exchange, job_id: str) -> None:
    exchange.state.spawn(_client_went_away(exchange, job_id))


async def _unless_client_gone(exchange: Exchange, work: Awaitable[T]) -> T:
    """``work``'s outcome; :class:`_ClientGone` (``work`` cancelled) once the client has
    closed the connection, :class:`_ServerStopping` once the gateway is stopping."""
    task = asyncio.ensure_future(work)
    stopping = exchange.state.stopping
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL)
            if done:
                return task.result()
            if stopping.is_set() or exchange.client_gone():
                task.cancel()
                await asyncio.wait({task})
                raise _ServerStopping if stopping.is_set() else _ClientGone
    except asyncio.CancelledError:
        task.cancel()
        raise


def _handle(exchange: Exchange, job: JobInfo) -> dict[str, Any]:
    return handle_of(exchange.request, job).model_dump(mode="json")


async def _answer(exchange: Exchange, job: JobInfo, wait: float) -> web.StreamResponse:
    """One JSON answer once the job has ended, or with its handle after ``wait`` seconds (or
    as soon as the gateway is stopping)."""
    jobs = exchange.context.jobs
    try:
        ended = await _unless_client_gone(
            exchange, jobs.wait(job.id, caller=exchange.caller, timeout=wait, known=job)
        )
    except _ServerStopping:
        ended = await jobs.get(job.id, caller=exchange.caller)
    except _ClientGone:
        if _cancels_on_disconnect(exchange, job.id):
            await _client_went_away(exchange, job.id)
        return web.Response(status=204)
    except asyncio.CancelledError:
        if _cancels_on_disconnect(exchange, job.id):
            _cancel_in_background(exchange, job.id)
        raise
    return exchange.reply(job_result(ended, _handle(exchange, ended)))


def _progress_params(token: str | int, progress: float, total: float) -> dict[str, Any]:
    return {
        "progressToken": token,
        "progress": int(progress) if progress.is_integer() else progress,
        "total": int(total) if total.is_integer() else total,
    }


async def _relay(
    exchange: Exchange,
    stream: EventStream,
    job: JobInfo,
    token: str | int,
    tracker: ProgressTracker,
) -> None:
    """Progress notifications for the job's events until its terminal one."""
    events = exchange.context.jobs.events(job.id, heartbeat=KEEPALIVE)
    try:
        async for event in events:
            if event is None:
                await stream.comment()
                continue
            update = tracker.feed(event)
            if update is not None:
                params = _progress_params(token, update.progress, update.total)
                if update.message:
                    params["message"] = update.message
                await stream.send(notification_message("notifications/progress", params))
            if event.kind.is_terminal:
                return
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def _stream(
    exchange: Exchange, spec: ToolSpec, job: JobInfo, token: str | int, wait: float
) -> web.StreamResponse:
    stream = EventStream(exchange)
    tracker = ProgressTracker(hops=len(spec.route))
    try:
        await stream.open()
        try:
            relay = _relay(exchange, stream, job, token, tracker)
            await _unless_client_gone(exchange, asyncio.wait_for(relay, wait))
        except (TimeoutError, _ServerStopping):
            pass  # the tool's wait is over, or the gateway is stopping: the handle answers
        current = await exchange.context.jobs.get(job.id, caller=exchange.caller)
        return await stream.finish(
            exchange.result_message(job_result(current, _handle(exchange, current)))
        )
    except (_ClientGone, ConnectionResetError):
        if _cancels_on_disconnect(exchange, job.id):
            await _client_went_away(exchange, job.id)
        return stream.response
    except asyncio.CancelledError:
        if _cancels_on_disconnect(exchange, job.id):
            _cancel_in_background(exchange, job.id)
        elif exchange.state.stopping.is_set():
            await _finish_quietly(exchange, stream, job)
        raise
    except Exception:
        if not stream.response.prepared:
            raise
        # the stream has begun: the error ends it instead of a reply of its own
        log.exception("streaming the call of job {} failed", job.id)
        error = McpError(INTERNAL_ERROR, "Internal error")
        try:
            return await stream.finish(error_message(exchange.request_id, error))
        except ConnectionResetError:
            return stream.response


async def _finish_quietly(exchange: Exchange, stream: EventStream, job: JobInfo) -> None:
    """End a stream that the stopping gateway cut short with the job's handle, if the stream
    has begun and can still be written (briefly: the gateway is on its way out)."""
    if not stream.response.prepared or exchange.client_gone():
        return
    message = exchange.result_message(job_result(job, _handle(exchange, job)))
    try:
        await asyncio.wait_for(stream.finish(message), FINISH_TIMEOUT)
    except Exception:
        log.debug("could not end the stream of job {} with its handle", job.id, exc_info=True)


def _job_id_argument(arguments: Any) -> str:
    if not isinstance(arguments, dict):
        raise InvalidArgument("arguments: expected an object")
    unexpected = sorted(set(arguments) - {"job_id"})
    if unexpected:
        raise InvalidArgument(f"arguments: unexpected property {unexpected[0]!r}")
    job_id = arguments.get("job_id")
    if job_id is None:
        raise InvalidArgument("arguments: 'job_id' is a required property")
    if not isinstance(job_id, str) or not job_id:
        raise InvalidArgument("arguments.job_id: expected a job id (a string)")
    if len(job_id) > MAX_JOB_ID_LENGTH or "\x00" in job_id:
        raise InvalidArgument("arguments.job_id: not a job id")
    return job_id


async def _builtin(exchange: Exchange, name: str, arguments: Any) -> dict[str, Any]:
    jobs = exchange.context.jobs
    try:
        job_id = _job_id_argument(arguments)
        if name == GET_JOB:
            job = await jobs.get(job_id, caller=exchange.caller)
        else:
            job = await jobs.cancel(
                job_id, caller=exchange.caller, reason="cancelled with the cancel_job tool"
            )
    except (InvalidArgument, JobNotFound, Conflict) as e:
        return error_result(e.message)
    body = job_json(job)
    return text_result(dumps_str(body), structured=body)
