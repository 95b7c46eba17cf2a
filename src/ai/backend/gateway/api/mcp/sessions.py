"""Legacy sessions (revisions up to 2025-11-25, reference/protocols.md §4.2, §4.6):
``initialize`` opens one and answers with its ``Mcp-Session-Id``; every later request names
it (missing → 400, unknown, expired or another caller's → 404) and carries the negotiated
``MCP-Protocol-Version`` (absent: 2025-03-26 is assumed; another revision → 400); ``DELETE``
ends it; ``notifications/cancelled`` cancels the job of one of its calls in flight."""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import web

from ai.backend.common.log import BraceStyleAdapter

from ...services.jobs import Caller, JobService
from ...services.mcp_sessions import McpSession, McpSessionService
from .calls import cancel_job
from .exchange import SERVER_NAME, json_reply
from .protocol import (
    HANDSHAKE_VERSIONS,
    INVALID_REQUEST,
    LATEST_HANDSHAKE_VERSION,
    PROTOCOL_VERSION_HEADER,
    SESSION_HEADER,
    McpError,
    Notification,
    Request,
    result_message,
)

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

INSTRUCTIONS: Final = (
    "Each tool runs as a job on Backend.AI Actors. A call that has not finished within the"
    " tool's wait answers with a job_id: call get_job with it to read the result later, or"
    " cancel_job to stop the job."
)
TOOLS_CAPABILITY: Final = {"tools": {"listChanged": False}}


def negotiated_version(requested: Any) -> str:
    """The requested revision when this server speaks it, else the latest one it does."""
    return requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE_VERSION


async def initialize(
    sessions: McpSessionService, caller: Caller, request: Request, version: str
) -> web.Response:
    params = request.params
    protocol_version = negotiated_version(params.get("protocolVersion"))
    session = await sessions.create(protocol_version=protocol_version, owner=caller.access_key)
    client = params.get("clientInfo")
    client_name = client.get("name") if isinstance(client, dict) else None
    log.info("MCP session {} opened ({}, client {!r})", session.id, protocol_version, client_name)
    result = {
        "protocolVersion": protocol_version,
        "capabilities": TOOLS_CAPABILITY,
        "serverInfo": {"name": SERVER_NAME, "version": version},
        "instructions": INSTRUCTIONS,
    }
    return json_reply(result_message(request.id, result), headers={SESSION_HEADER: session.id})


async def resolve_session(sessions: McpSessionService, caller: Caller, headers: Any) -> McpSession:
    """The session a request names, checked against its caller and protocol version header;
    an :class:`McpError` with the transport's status otherwise."""
    session_id = headers.get(SESSION_HEADER)
    if not session_id:
        raise McpError(
            INVALID_REQUEST,
            f"Bad Request: missing {SESSION_HEADER} (send initialize first)",
            http_status=400,
        )
    session = await sessions.get(session_id)
    if session is None or session.owner != caller.access_key:
        raise McpError(INVALID_REQUEST, "Not Found: unknown or expired session", http_status=404)
    version = headers.get(PROTOCOL_VERSION_HEADER)
    if version is not None and version != session.protocol_version:
        raise McpError(
            INVALID_REQUEST,
            f"Bad Request: {PROTOCOL_VERSION_HEADER} {version!r} is not the session's"
            f" negotiated revision {session.protocol_version!r}",
            http_status=400,
        )
    return session


async def end_session(sessions: McpSessionService, session: McpSession) -> None:
    if await sessions.delete(session.id):
        log.info("MCP session {} ended by its client", session.id)


async def cancel_request(
    sessions: McpSessionService,
    jobs: JobService,
    caller: Caller,
    session: McpSession,
    notification: Notification,
) -> None:
    """``notifications/cancelled {requestId}``: cancel the job of that call of the session;
    unknown or finished requests are ignored, as the specification asks."""
    request_id = notification.params.get("requestId")
    if not isinstance(request_id, str | int):
        return
    job_id = await sessions.cancel_request(session.id, request_id)
    if job_id is None:
        return
    reason = notification.params.get("reason")
    text = f": {reason}" if isinstance(reason, str) else ""
    await cancel_job(jobs, caller, job_id, f"cancelled by the client{text}")
