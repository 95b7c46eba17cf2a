"""Jobs (gateway ``/v1/jobs``): submit by tool or route, get, list, cancel, wait, and follow a
job's events over SSE, resuming with ``Last-Event-ID`` after a dropped connection (also when a
proxy answers 502/503/504 while the gateway behind it restarts)."""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import timedelta
from typing import Any, Final

import aiohttp

from ai.backend.common.aio import Backoff
from ai.backend.common.dto.gateway_api import JobHandle, JobInfo, StoredJobEvent
from ai.backend.common.json import JSONDecodeError, loads
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.types.units import format_duration

from ..dto import JobPage
from ..exceptions import BackendAPIError, BackendClientError, ServerUnreachable
from ..sse import SseMessage, SseParser
from ..transport import ServiceEndpoint, iter_lines, parse_as, path_segment, unreachable

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

# the gateway sends a heartbeat comment every 15 s: a stream silent for longer is dead
EVENTS_READ_TIMEOUT: Final = 45.0
# reconnecting after a dropped stream: 0.2 s doubling to 5 s; given up after this many
# attempts in a row that received nothing (neither an event nor a heartbeat)
RECONNECT_MIN: Final = 0.2
RECONNECT_MAX: Final = 5.0
MAX_RECONNECTS: Final = 10
# what a streamed read raises when the connection drops or goes silent
STREAM_ERRORS: Final = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError)
# what a proxy in front of a gateway that is restarting answers: worth another attempt once the
# stream had been opened (on the first attempt it is an error like any other)
TRANSIENT_STATUSES: Final = frozenset({502, 503, 504})


def duration_text(value: str | timedelta) -> str:
    """A duration as the gateway reads it (``"30s"``, ``"1h30m"``)."""
    return value if isinstance(value, str) else format_duration(value)


def is_transient(error: BackendClientError) -> bool:
    """Whether ``error`` may pass by itself: nothing answered, or a proxy answered 502/503/504
    for a gateway it could not reach."""
    if isinstance(error, BackendAPIError):
        return error.status in TRANSIENT_STATUSES
    return isinstance(error, ServerUnreachable)


class _StreamDropped(Exception):
    """The event stream ended without its terminal event because the connection failed or a
    proxy answered 502/503/504 (``opened``: after the stream had been opened; else the
    connection could not be made, or was answered with 502/503/504)."""

    def __init__(self, error: BackendClientError, *, opened: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.opened = opened


class Jobs:
    def __init__(self, gateway: ServiceEndpoint) -> None:
        self._gateway = gateway

    async def submit(
        self,
        tool: str | None = None,
        *,
        route: builtins.list[str] | None = None,
        arguments: dict[str, Any] | None = None,
        timeout: str | timedelta | None = None,
    ) -> JobInfo:
        """Start a job: by ``tool`` (arguments checked against its schema) or along ``route``
        (``arguments`` is the first actor's payload); give exactly one. ``timeout`` bounds the
        whole job (``"30s"`` or a ``timedelta``). Returns at once with the job as stored."""
        body: dict[str, Any] = {"arguments": arguments or {}}
        if tool is not None:
            body["tool"] = tool
        if route is not None:
            body["route"] = builtins.list(route)
        if timeout is not None:
            body["timeout"] = duration_text(timeout)
        _, answer = await self._gateway.call("POST", "/v1/jobs", body=body)
        handle = parse_as(JobHandle, answer, what="job handle")
        return await self.get(handle.job_id)

    async def get(self, job_id: str) -> JobInfo:
        answer = await self._gateway.get(f"/v1/jobs/{path_segment(job_id)}")
        return parse_as(JobInfo, answer, what="job")

    async def list(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> JobPage:
        """One page of the caller's jobs, newest first (``status``: pending, running,
        succeeded, failed or cancelled)."""
        answer = await self._gateway.get(
            "/v1/jobs", query={"status": status, "limit": limit, "cursor": cursor}
        )
        return parse_as(JobPage, answer, what="job list")

    async def cancel(self, job_id: str) -> JobInfo:
        """Cancel a job that has not ended; a job that has ended is a
        :class:`~ai.backend.client.exceptions.BackendAPIError` 409 ``conflict``."""
        _, answer = await self._gateway.call("POST", f"/v1/jobs/{path_segment(job_id)}/cancel")
        return parse_as(JobInfo, answer, what="job")

    async def wait(self, job_id: str, *, timeout: float | None = None) -> JobInfo:
        """The job once it has ended (succeeded, failed or cancelled); ``TimeoutError`` after
        ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            job = await self.get(job_id)
            if job.status.is_terminal:
                return job
            async with aclosing(self.events(job_id)) as events:
                async for event in events:
                    if event.kind.is_terminal:
                        break
            return await self.get(job_id)

    async def events(
        self, job_id: str, *, after: int | None = None
    ) -> AsyncGenerator[StoredJobEvent, None]:
        """The job's events from the first (or the one after ``after``) to the terminal one,
        history first, then live. After a dropped connection the stream is reopened with
        ``Last-Event-ID`` set to the last event received, so no event is missed or repeated;
        once the stream had been opened, a 502/503/504 answer (a proxy in front of a gateway
        that restarts) counts as a dropped connection too. Gives up after ``MAX_RECONNECTS``
        attempts in a row that received nothing, not even a heartbeat: raises the last
        attempt's error (:class:`ServerUnreachable` or :class:`BackendAPIError`), and raises
        at once when the first attempt cannot connect or is refused."""
        last_seq = after
        backoff = Backoff(RECONNECT_MIN, RECONNECT_MAX)
        failures = 0
        opened_once = False
        while True:
            received = 0
            alive = False  # an event or a heartbeat came through this connection
            dropped: BackendClientError | None = None
            try:
                async with aclosing(self._stream_once(job_id, last_seq)) as stream:
                    async for event in stream:
                        alive = True
                        if event is None:
                            continue  # a heartbeat: the gateway is there
                        received += 1
                        last_seq = event.seq
                        yield event
                        if event.kind.is_terminal:
                            return
            except _StreamDropped as e:
                if not (opened_once or e.opened):
                    raise e.error from None  # never reached: a wrong URL, not a dropped stream
                dropped = e.error
            opened_once = True
            if not received and dropped is None:
                try:
                    if (await self.get(job_id)).status.is_terminal:
                        return  # nothing after last_seq and the job has ended: its end was seen
                except BackendClientError as e:
                    if not is_transient(e):
                        raise
                    dropped = e
            if alive:
                failures = 0
                backoff.reset()
            failures += 1
            if failures > MAX_RECONNECTS:
                raise dropped or ServerUnreachable(
                    self._gateway.url, f"the event stream of job {job_id} keeps closing"
                )
            log.debug(
                "events of job {}: stream ended after seq {} ({}); reconnecting",
                job_id,
                last_seq,
                dropped or "closed by the server",
            )
            await backoff.wait()

    async def _stream_once(
        self, job_id: str, after: int | None
    ) -> AsyncGenerator[StoredJobEvent | None, None]:
        """One connection's worth of events (``None`` for each SSE comment: a heartbeat);
        :class:`_StreamDropped` when it fails or a proxy answers 502/503/504."""
        headers = {} if after is None else {"Last-Event-ID": str(after)}
        try:
            async with self._gateway.stream(
                f"/v1/jobs/{path_segment(job_id)}/events",
                headers=headers,
                read_timeout=EVENTS_READ_TIMEOUT,
            ) as response:
                parser = SseParser()
                try:
                    async for line in iter_lines(response):
                        if line.startswith(b":"):
                            yield None
                            continue
                        message = parser.feed(line.decode(errors="replace"))
                        if message is not None and message.id is not None:
                            yield _stored_event(job_id, message)
                except STREAM_ERRORS as e:
                    raise _StreamDropped(
                        unreachable(self._gateway.url, e, EVENTS_READ_TIMEOUT), opened=True
                    ) from None
        except (ServerUnreachable, BackendAPIError) as e:
            if not is_transient(e):
                raise
            raise _StreamDropped(e, opened=False) from None


def _stored_event(job_id: str, message: SseMessage) -> StoredJobEvent:
    try:
        data = loads(message.data)
        seq = int(message.id or "")
    except (JSONDecodeError, ValueError):
        raise BackendClientError(
            f"unexpected event from the server: id {message.id!r}, data {message.data[:200]!r}"
        ) from None
    at = data.get("at") if isinstance(data, dict) else None
    return parse_as(
        StoredJobEvent,
        {"job_id": job_id, "seq": seq, "kind": message.event, "data": data, "at": at},
        what="job event",
    )
