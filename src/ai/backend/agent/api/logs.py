"""``GET /v1/replicas/{replica_id}/logs?process=runtime|sidecar|all&tail=N&follow=0|1``.

Signed with the agent's own keypair (the manager asks on behalf of its users). The answer is
``application/x-ndjson``: one ``{"replica_id", "process", "line"}`` object per line, the last
``tail`` lines of each log (runtime first; read from at most its last 4 MiB, see
:mod:`..services.replica_logs`), then, with ``follow=1``, what is appended until the client goes
away, with an empty line as a heartbeat after ``HEARTBEAT_INTERVAL`` of silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from ai.backend.common.dto.manager_api import LogLine
from ai.backend.common.errors import InvalidInput
from ai.backend.common.json import dumps
from ai.backend.common.web import signed_parts

from ..services.replica_logs import (
    MAX_TAIL_LINES,
    FilePosition,
    LogFile,
    LogProcess,
    ReplicaLogReader,
)
from ..services.request_auth import RequestVerifier

NDJSON = "application/x-ndjson"
HEARTBEAT_INTERVAL = 15.0
DEFAULT_TAIL = 100
QUERY_PARAMETERS = ("process", "tail", "follow")
FLAGS = {"0": False, "false": False, "1": True, "true": True}


@dataclass(frozen=True)
class LogQuery:
    process: LogProcess
    tail: int
    follow: bool


def _whole_number(text: str) -> int | None:
    """``text`` as a small whole number (ASCII digits only), else ``None``."""
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        return None
    return int(text)


def parse_log_query(query: Mapping[str, str]) -> LogQuery:
    """The query of a logs request; :class:`InvalidInput` (400) naming the bad parameter."""
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        raise InvalidInput(
            f"{unknown[0]}: unknown query parameter (expected {', '.join(QUERY_PARAMETERS)})"
        )
    process = query.get("process", LogProcess.ALL.value)
    if process not in {p.value for p in LogProcess}:
        raise InvalidInput(f"process: expected runtime, sidecar or all, got {process!r}")
    raw_tail = query.get("tail", str(DEFAULT_TAIL))
    tail = _whole_number(raw_tail)
    if tail is None or tail > MAX_TAIL_LINES:
        raise InvalidInput(f"tail: expected a whole number from 0 to {MAX_TAIL_LINES}")
    follow = query.get("follow", "0").lower()
    if follow not in FLAGS:
        raise InvalidInput(f"follow: expected 0 or 1, got {follow!r}")
    return LogQuery(LogProcess(process), tail, FLAGS[follow])


def _ndjson(lines: Iterable[LogLine]) -> bytes:
    return b"".join(dumps(line.to_json()) + b"\n" for line in lines)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class ReplicaLogsApi:
    def __init__(
        self,
        *,
        reader: ReplicaLogReader,
        verifier: RequestVerifier,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self._reader = reader
        self._verifier = verifier
        self._heartbeat_interval = heartbeat_interval
        self._stopping = asyncio.Event()  # followers end when the server shuts down

    async def replica_logs(self, request: web.Request) -> web.StreamResponse:
        self._verifier.verify(
            authorization=request.headers.get("Authorization"),
            parts=signed_parts(request, await request.read()),
            now=datetime.now(UTC),
        )
        query = parse_log_query(request.query)
        files = self._reader.files(request.match_info["replica_id"], query.process)
        tail = await self._reader.tail(files, query.tail, complete_only=query.follow)
        response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if tail.lines:
                await response.write(_ndjson(tail.lines))
            if query.follow:
                await self._follow(request, response, tail.positions, files)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        return response

    async def _follow(
        self,
        request: web.Request,
        response: web.StreamResponse,
        positions: Sequence[FilePosition],
        files: Sequence[LogFile],
    ) -> None:
        last_write = time.monotonic()
        batches = self._reader.follow(files, positions)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                if _client_gone(request) or self._stopping.is_set():
                    return
                now = time.monotonic()
                if batch:
                    await response.write(_ndjson(batch))
                    last_write = now
                elif now - last_write >= self._heartbeat_interval:
                    await response.write(b"\n")
                    last_write = now

    async def _stop_following(self, _app: web.Application) -> None:
        self._stopping.set()

    async def _close_reader(self, _app: web.Application) -> None:
        self._reader.close()

    def add_routes(self, app: web.Application) -> None:
        """The route, and its shutdown: followers end, then the reader's threads stop."""
        app.router.add_get("/v1/replicas/{replica_id}/logs", self.replica_logs)
        app.on_shutdown.append(self._stop_following)
        app.on_cleanup.append(self._close_reader)
