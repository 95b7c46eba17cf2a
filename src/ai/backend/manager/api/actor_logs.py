"""``GET /v1/actors/{name}/logs?replica=&process=&tail=&follow=``: the actor's replica logs as
NDJSON (``application/x-ndjson``), one ``{"replica_id", "process", "line"}`` object per line;
with ``follow=1`` until the caller leaves, an empty line as a heartbeat after
``HEARTBEAT_INTERVAL`` of silence. What is read from where: ``services/actor_logs.py``.

An access key follows at most ``[logs] max_followed_streams_per_key`` streams at once (each
holds a connection to every followed replica's agent); one more is refused with 429
``too_many_requests``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from aiohttp import web

from ai.backend.common.dto.manager_api import LogLine
from ai.backend.common.errors import InvalidInput, TooManyRequests
from ai.backend.common.json import dumps

from ..config import LogsConfig
from ..services.actor_logs import LogRequest
from ..services.auth import require_user
from .context import caller, context

NDJSON = "application/x-ndjson"
HEARTBEAT_INTERVAL = 15.0
DEFAULT_TAIL = 100
MAX_TAIL = 10_000
PROCESSES = ("runtime", "sidecar", "all")
QUERY_PARAMETERS = ("replica", "process", "tail", "follow")
FLAGS = {"0": False, "false": False, "1": True, "true": True}
MAX_REPLICA_FILTER = 128


def _whole_number(text: str) -> int | None:
    """``text`` as a small whole number (ASCII digits only), else ``None``."""
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        return None
    return int(text)


class FollowedStreams:
    """How many log streams each access key follows; at most ``limit`` at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, access_key: str) -> Iterator[None]:
        """One more stream of ``access_key`` while inside; :class:`TooManyRequests`
        (429) when it already follows ``limit``."""
        if self._open[access_key] >= self.limit:
            raise TooManyRequests(
                f"follow: this access key already follows {self.limit} log streams,"
                " the most it may at once; close one first"
            )
        self._open[access_key] += 1
        try:
            yield
        finally:
            self._open[access_key] -= 1
            if not self._open[access_key]:
                del self._open[access_key]


STOPPING_KEY = web.AppKey("actor_logs_stopping", asyncio.Event)
FOLLOWED_KEY = web.AppKey("actor_logs_followed", FollowedStreams)


def parse_log_request(query: Mapping[str, str]) -> LogRequest:
    """The query of a logs request; :class:`InvalidInput` (400) naming the bad parameter."""
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        raise InvalidInput(
            f"{unknown[0]}: unknown query parameter (expected {', '.join(QUERY_PARAMETERS)})"
        )
    replica = query.get("replica") or None
    if replica is not None and (len(replica) > MAX_REPLICA_FILTER or not replica.isprintable()):
        raise InvalidInput("replica: expected a replica id or a prefix of one")
    process = query.get("process", "all")
    if process not in PROCESSES:
        raise InvalidInput(f"process: expected runtime, sidecar or all, got {process!r}")
    raw_tail = query.get("tail", str(DEFAULT_TAIL))
    tail = _whole_number(raw_tail)
    if tail is None or tail > MAX_TAIL:
        raise InvalidInput(f"tail: expected a whole number from 0 to {MAX_TAIL}")
    follow = query.get("follow", "0").lower()
    if follow not in FLAGS:
        raise InvalidInput(f"follow: expected 0 or 1, got {follow!r}")
    return LogRequest(replica=replica, process=process, tail=tail, follow=FLAGS[follow])


def _ndjson(lines: Iterable[LogLine]) -> bytes:
    return b"".join(dumps(line.to_json()) + b"\n" for line in lines)


def _caller_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def actor_logs(request: web.Request) -> web.StreamResponse:
    keypair = caller(request)
    require_user(keypair)
    log_request = parse_log_request(request.query)
    if not log_request.follow:
        return await _stream_logs(request, log_request)
    with request.app[FOLLOWED_KEY].hold(keypair.access_key):
        return await _stream_logs(request, log_request)


async def _stream_logs(request: web.Request, log_request: LogRequest) -> web.StreamResponse:
    stream = await context(request).actor_logs.open(request.match_info["name"], log_request)
    stopping = request.app[STOPPING_KEY]
    response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    last_write = time.monotonic()
    try:
        async with contextlib.aclosing(stream.batches()) as batches:
            async for batch in batches:
                if _caller_gone(request) or stopping.is_set():
                    break
                now = time.monotonic()
                if batch:
                    await response.write(_ndjson(batch))
                    last_write = now
                elif now - last_write >= HEARTBEAT_INTERVAL:
                    await response.write(b"\n")
                    last_write = now
        await response.write_eof()
    except ConnectionError:
        pass  # the caller went away
    return response


async def _stop_following(app: web.Application) -> None:
    app[STOPPING_KEY].set()


def limit_followed_streams(app: web.Application, per_key: int) -> None:
    """At most ``per_key`` followed log streams per access key (``[logs]`` config)."""
    app[FOLLOWED_KEY] = FollowedStreams(per_key)


def add_routes(app: web.Application) -> None:
    app[STOPPING_KEY] = asyncio.Event()  # followers end when the server shuts down
    limit_followed_streams(app, LogsConfig().max_followed_streams_per_key)
    app.on_shutdown.append(_stop_following)
    app.router.add_get("/v1/actors/{name}/logs", actor_logs)
