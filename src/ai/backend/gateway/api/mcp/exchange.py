"""One MCP POST as the method handlers see it (:class:`Exchange`), the endpoint's state in the
app (:class:`McpState`), and how replies are written: one JSON body, or an SSE stream of
notifications ended by the response."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from redis.asyncio import Redis

from ai.backend.common.json import dumps
from ai.backend.common.transport.redis_connection import redis_client

from ...services.jobs import Caller
from ...services.mcp_sessions import McpSession, McpSessionService
from ..context import GatewayContext
from .envelope import Era
from .protocol import (
    META_SERVER_INFO,
    MODERN_ERROR_STATUS,
    McpError,
    RequestId,
    error_message,
    result_message,
    sse_event,
)

SERVER_NAME: Final = "backend.ai-gateway"
LIST_TTL_MS: Final = 60_000
"""How long a modern client may cache ``tools/list`` and ``server/discover`` (tools change only
when the gateway reloads its tool files)."""
SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


@dataclass
class McpState:
    """What the endpoint keeps in the app: the legacy session store (made on first use, from
    ``[redis]``, unless ``server.py`` set one), the tasks that must outlive a request
    (cancelling a job after its client went away), and whether the gateway is stopping (set at
    the app's shutdown, before aiohttp cancels the handlers still running: calls waiting for a
    job then answer with its handle, and connections the gateway cuts cancel no job)."""

    sessions: McpSessionService | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _own_redis: Redis | None = None

    def session_store(self, context: GatewayContext) -> McpSessionService:
        if self.sessions is None:
            self._own_redis = redis_client(context.config.redis.url)
            self.sessions = McpSessionService(self._own_redis, prefix=context.config.redis.prefix)
        return self.sessions

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def close(self) -> None:
        if self.background:
            await asyncio.wait(set(self.background), timeout=5)
        if self._own_redis is not None:
            await self._own_redis.aclose()
            self._own_redis = None


MCP_STATE_KEY: Final = web.AppKey("mcp_state", McpState)


def json_reply(
    message: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(message), status=status, content_type="application/json", headers=headers
    )


def transport_error(
    error: McpError, *, request_id: RequestId | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """An error of the transport (not JSON-RPC, no session, bad header) with its own status."""
    return json_reply(
        error_message(request_id if request_id is not None else error.request_id, error),
        status=error.http_status or 400,
        headers=headers,
    )


@dataclass(frozen=True)
class Exchange:
    """One request of one era: who calls, which revision, (legacy) its session."""

    request: web.Request
    context: GatewayContext
    state: McpState
    caller: Caller
    era: Era
    protocol_version: str
    request_id: RequestId
    session: McpSession | None = None

    @property
    def modern(self) -> bool:
        return self.era is Era.MODERN

    @property
    def server_info(self) -> dict[str, str]:
        return {"name": SERVER_NAME, "version": self.context.version}

    def complete(self, result: dict[str, Any], *, cacheable: bool = False) -> dict[str, Any]:
        """``result`` as this era wants it: modern results carry ``resultType`` and the server's
        identity in ``_meta``, and cacheable ones (lists, discover) ``ttlMs`` + ``cacheScope``."""
        if not self.modern:
            return result
        meta = result.get("_meta")
        completed = {
            **result,
            "resultType": "complete",
            "_meta": {
                **(meta if isinstance(meta, dict) else {}),
                META_SERVER_INFO: self.server_info,
            },
        }
        if cacheable:
            completed["ttlMs"] = LIST_TTL_MS
            completed["cacheScope"] = "private"
        return completed

    def result_message(self, result: dict[str, Any], *, cacheable: bool = False) -> dict[str, Any]:
        return result_message(self.request_id, self.complete(result, cacheable=cacheable))

    def reply(self, result: dict[str, Any], *, cacheable: bool = False) -> web.Response:
        return json_reply(self.result_message(result, cacheable=cacheable))

    def error_reply(self, error: McpError) -> web.Response:
        """A JSON-RPC error for this request: transport errors keep their status; otherwise the
        modern era maps the code (``-32601`` → 404, ``-32602`` → 400, …) and the legacy era
        answers 200, as its clients expect (mcp 1.x raises on a 4xx before reading the body)."""
        status = error.http_status
        if status is None:
            status = MODERN_ERROR_STATUS.get(error.code, 200) if self.modern else 200
        return json_reply(error_message(self.request_id, error), status=status)

    def accepts_event_stream(self) -> bool:
        accept = self.request.headers.get("Accept")
        if accept is None:
            return True
        return any(
            part.split(";")[0].strip() in ("text/event-stream", "text/*", "*/*")
            for part in accept.split(",")
        )

    def client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()


class EventStream:
    """The SSE answer to one request: notifications, then the final message."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self.response = web.StreamResponse(headers=SSE_HEADERS)

    async def open(self) -> None:
        await self.response.prepare(self._exchange.request)

    async def send(self, message: dict[str, Any]) -> None:
        """Raises ``ConnectionResetError`` once the client has gone."""
        await self.response.write(sse_event(message))

    async def comment(self) -> None:
        """A keep-alive line that clients ignore (and that fails once the client has gone)."""
        await self.response.write(b": keep-alive\n\n")

    async def finish(self, message: dict[str, Any]) -> web.StreamResponse:
        await self.send(message)
        await self.response.write_eof()
        return self.response
