"""``/mcp``: MCP Streamable HTTP for both eras (DESIGN.md §5, reference/protocols.md §4).

``POST`` parses one JSON-RPC message (malformed JSON → 400 ``-32700``, anything else that is not
one message → 400 ``-32600``), picks its era (:func:`.envelope.era_of`) and dispatches:

- modern (2026-07-28, stateless): the envelope ladder (``-32020`` / ``-32022`` / ``-32602``,
  400), then ``server/discover``, ``tools/list``, ``tools/call`` (other methods: 404
  ``-32601``); notifications are acknowledged with 202.
- legacy (up to 2025-11-25): ``initialize`` opens a session, the rest needs it
  (:mod:`.sessions`); ``ping``, ``tools/list``, ``tools/call``; errors of a method are
  answered with 200.

``GET`` (no standalone stream) → 405; ``DELETE`` ends a legacy session. An ``Origin`` that is
not in ``[api] allowed_origins`` (scheme and host, any port) → 403 for every method."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.web import Handler

from ..context import caller, context
from .calls import call_tool
from .envelope import Era, check_modern_request, era_of, origin_allowed
from .exchange import MCP_STATE_KEY, Exchange, McpState, transport_error
from .protocol import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    PROTOCOL_VERSION_HEADER,
    ClientResponse,
    McpError,
    Message,
    Notification,
    Request,
    parse_message,
    unsupported_version,
)
from .results import tool_descriptors
from .sessions import (
    INSTRUCTIONS,
    TOOLS_CAPABILITY,
    cancel_request,
    end_session,
    initialize,
    resolve_session,
)

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

MethodHandler = Callable[[Exchange, dict[str, Any]], Awaitable[web.StreamResponse]]
ALLOWED_METHODS: Final = "POST, DELETE"


async def _discover(exchange: Exchange, params: dict[str, Any]) -> web.StreamResponse:
    result = {
        "supportedVersions": list(MODERN_VERSIONS),
        "capabilities": TOOLS_CAPABILITY,
        "instructions": INSTRUCTIONS,
    }
    return exchange.reply(result, cacheable=True)


async def _list_tools(exchange: Exchange, params: dict[str, Any]) -> web.StreamResponse:
    tools = tool_descriptors(list(exchange.context.tools))
    return exchange.reply({"tools": tools}, cacheable=True)


async def _ping(exchange: Exchange, params: dict[str, Any]) -> web.StreamResponse:
    return exchange.reply({})


MODERN_METHODS: Final[dict[str, MethodHandler]] = {
    "server/discover": _discover,
    "tools/list": _list_tools,
    "tools/call": call_tool,
}
LEGACY_METHODS: Final[dict[str, MethodHandler]] = {
    "ping": _ping,
    "tools/list": _list_tools,
    "tools/call": call_tool,
}


async def _dispatch(
    exchange: Exchange, methods: dict[str, MethodHandler], request: Request
) -> web.StreamResponse:
    handler = methods.get(request.method)
    if handler is None:
        return exchange.error_reply(
            McpError(METHOD_NOT_FOUND, f"Method not found: {request.method}")
        )
    try:
        return await handler(exchange, request.params)
    except McpError as e:
        return exchange.error_reply(e)
    except Exception:
        log.exception("MCP {} failed", request.method)
        return exchange.error_reply(McpError(INTERNAL_ERROR, "Internal error"))


async def _modern(request: web.Request, state: McpState, message: Message) -> web.StreamResponse:
    if not isinstance(message, Request):
        # no client-to-server notifications on this wire (cancelling = closing the stream)
        version = request.headers.get(PROTOCOL_VERSION_HEADER)
        if version is not None and version not in MODERN_VERSIONS:
            return transport_error(unsupported_version(version))
        return web.Response(status=202)
    try:
        envelope = check_modern_request(request.headers, message)
    except McpError as e:
        return transport_error(e, request_id=message.id)
    exchange = Exchange(
        request=request,
        context=context(request),
        state=state,
        caller=caller(request),
        era=Era.MODERN,
        protocol_version=envelope.protocol_version,
        request_id=message.id,
    )
    return await _dispatch(exchange, MODERN_METHODS, message)


async def _legacy(request: web.Request, state: McpState, message: Message) -> web.StreamResponse:
    ctx = context(request)
    who = caller(request)
    sessions = state.session_store(ctx)
    request_id = message.id if isinstance(message, Request | ClientResponse) else None
    if isinstance(message, Request) and message.method == "initialize":
        return await initialize(sessions, who, message, ctx.version)
    try:
        session = await resolve_session(sessions, who, request.headers)
    except McpError as e:
        return transport_error(e, request_id=request_id)
    if isinstance(message, ClientResponse):
        return web.Response(status=202)
    if isinstance(message, Notification):
        if message.method == "notifications/cancelled":
            await cancel_request(sessions, ctx.jobs, who, session, message)
        return web.Response(status=202)
    exchange = Exchange(
        request=request,
        context=ctx,
        state=state,
        caller=who,
        era=Era.LEGACY,
        protocol_version=session.protocol_version,
        request_id=message.id,
        session=session,
    )
    return await _dispatch(exchange, LEGACY_METHODS, message)


@web.middleware
async def mcp_origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A browser page of a foreign origin gets 403 at ``/mcp``, before authentication (a
    DNS-rebinding page must learn nothing, not even that credentials are missing)."""
    if request.path == MCP_PATH:
        refused = _check_origin(request)
        if refused is not None:
            return refused
    return await handler(request)


def _check_origin(request: web.Request) -> web.Response | None:
    allowed = context(request).config.api.allowed_origins
    origin = request.headers.get("Origin")
    if origin_allowed(origin, allowed):
        return None
    error = McpError(
        INVALID_REQUEST, f"Forbidden: origin {origin!r} is not allowed", http_status=403
    )
    return transport_error(error)


async def handle_post(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return transport_error(
            McpError(INVALID_REQUEST, "Request Entity Too Large", http_status=413)
        )
    try:
        message = parse_message(body)
    except McpError as e:
        return transport_error(e)
    state = request.app[MCP_STATE_KEY]
    if era_of(request.headers, message) is Era.MODERN:
        return await _modern(request, state, message)
    return await _legacy(request, state, message)


async def handle_get(request: web.Request) -> web.StreamResponse:
    error = McpError(
        INVALID_REQUEST,
        "Method Not Allowed: this server offers no standalone SSE stream",
        http_status=405,
    )
    return transport_error(error, headers={"Allow": ALLOWED_METHODS})


async def handle_delete(request: web.Request) -> web.StreamResponse:
    version = request.headers.get(PROTOCOL_VERSION_HEADER)
    if version in MODERN_VERSIONS:
        error = McpError(
            INVALID_REQUEST, "Method Not Allowed: 2026-07-28 has no sessions", http_status=405
        )
        return transport_error(error, headers={"Allow": "POST"})
    ctx = context(request)
    sessions = request.app[MCP_STATE_KEY].session_store(ctx)
    try:
        session = await resolve_session(sessions, caller(request), request.headers)
    except McpError as e:
        return transport_error(e)
    await end_session(sessions, session)
    return web.Response(status=200)


async def _stopping(app: web.Application) -> None:
    app[MCP_STATE_KEY].stopping.set()


async def _close_state(app: web.Application) -> None:
    await app[MCP_STATE_KEY].close()


MCP_PATH = "/mcp"


def add_mcp_routes(app: web.Application) -> None:
    """``/mcp`` (POST, GET, DELETE). Legacy sessions live in Redis (``[redis]``) unless the
    app's :data:`MCP_STATE_KEY` state is given a session store before the first request."""
    app[MCP_STATE_KEY] = McpState()
    app.on_shutdown.append(_stopping)
    app.on_cleanup.append(_close_state)
    app.router.add_post(MCP_PATH, handle_post)
    app.router.add_get(MCP_PATH, handle_get, allow_head=False)
    app.router.add_delete(MCP_PATH, handle_delete)
