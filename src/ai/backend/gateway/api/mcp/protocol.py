"""JSON-RPC 2.0 as MCP's Streamable HTTP transport carries it (reference/protocols.md §4): the
protocol revisions and ``_meta`` keys, the error codes, one POST body parsed into one message,
and the shapes of what the server sends back (a JSON body or SSE ``message`` events).

Pure: no I/O, no aiohttp. A problem is an :class:`McpError`, which knows its JSON-RPC code and
the HTTP status the transport answers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ai.backend.common.json import JSONDecodeError, dumps, loads

JSONRPC_VERSION: Final = "2.0"

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
HEADER_MISMATCH: Final = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022

MODERN_VERSION: Final = "2026-07-28"
MODERN_VERSIONS: Final = (MODERN_VERSION,)
"""Stateless revisions: every request carries its version in ``_meta`` and in a header."""
HANDSHAKE_VERSIONS: Final = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
"""Revisions negotiated by ``initialize`` (a legacy session), oldest first."""
LATEST_HANDSHAKE_VERSION: Final = HANDSHAKE_VERSIONS[-1]
SUPPORTED_VERSIONS: Final = (*HANDSHAKE_VERSIONS, *MODERN_VERSIONS)

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"

PROTOCOL_VERSION_HEADER: Final = "MCP-Protocol-Version"
METHOD_HEADER: Final = "Mcp-Method"
NAME_HEADER: Final = "Mcp-Name"
SESSION_HEADER: Final = "Mcp-Session-Id"

NAME_BEARING_METHODS: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
"""Method → the parameter a modern client mirrors into ``Mcp-Name``."""

# HTTP status of a JSON-RPC error in the modern era (the legacy era answers request-level
# errors with 200: mcp 1.x clients raise on any other 4xx than 404 before reading the body)
MODERN_ERROR_STATUS: Final = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

RequestId = str | int


class McpError(Exception):
    """A JSON-RPC error. ``http_status`` is set for errors of the transport (a body that is not
    JSON-RPC, a missing session, a header mismatch), which are answered with that status in
    either era; ``None`` leaves it to the era (:data:`MODERN_ERROR_STATUS`, or 200)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        data: Any = None,
        http_status: int | None = None,
        request_id: RequestId | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status
        self.request_id = request_id

    def error_object(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def unsupported_version(requested: Any) -> McpError:
    """``-32022`` naming every revision this server speaks: a dual-era client that knows none
    of the modern ones falls back to ``initialize``."""
    return McpError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        data={"supported": list(SUPPORTED_VERSIONS), "requested": requested},
        http_status=400,
    )


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> dict[str, Any]:
        return _meta_of(self.params)


@dataclass(frozen=True)
class Notification:
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> dict[str, Any]:
        return _meta_of(self.params)


@dataclass(frozen=True)
class ClientResponse:
    """A response or error the client posts; this server sends no requests, so it is only
    acknowledged."""

    id: RequestId | None


Message = Request | Notification | ClientResponse


def _meta_of(params: dict[str, Any]) -> dict[str, Any]:
    meta = params.get("_meta")
    return meta if isinstance(meta, dict) else {}


def is_request_id(value: Any) -> bool:
    """MCP ids are strings or integers (``0`` included), never ``null``, booleans or floats."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def parse_message(body: bytes) -> Message:
    """One JSON-RPC message from a POST body; ``-32700`` for malformed JSON, ``-32600`` for
    anything else that is not a single request, notification or response (batches included:
    they were removed in 2025-06-18). Both are answered with 400."""
    try:
        decoded = loads(body)
    except (JSONDecodeError, RecursionError):
        raise McpError(
            PARSE_ERROR, "Parse error: the body is not valid JSON", http_status=400
        ) from None
    if isinstance(decoded, list):
        raise McpError(
            INVALID_REQUEST,
            "Invalid Request: JSON-RPC batches are not supported (removed in 2025-06-18)",
            http_status=400,
        )
    if not isinstance(decoded, dict):
        raise McpError(
            INVALID_REQUEST, "Invalid Request: expected a JSON-RPC object", http_status=400
        )
    request_id = decoded.get("id")
    known_id = request_id if is_request_id(request_id) else None
    if decoded.get("jsonrpc") != JSONRPC_VERSION:
        raise McpError(
            INVALID_REQUEST,
            'Invalid Request: "jsonrpc" must be "2.0"',
            http_status=400,
            request_id=known_id,
        )
    if "method" not in decoded:
        if "id" in decoded and ("result" in decoded or "error" in decoded):
            return ClientResponse(known_id)
        raise McpError(
            INVALID_REQUEST,
            'Invalid Request: a message needs "method", or "id" with "result" or "error"',
            http_status=400,
            request_id=known_id,
        )
    method = decoded["method"]
    if not isinstance(method, str) or not method:
        raise McpError(
            INVALID_REQUEST,
            'Invalid Request: "method" must be a non-empty string',
            http_status=400,
            request_id=known_id,
        )
    params = decoded.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise McpError(
            INVALID_REQUEST,
            'Invalid Request: "params" must be an object',
            http_status=400,
            request_id=known_id,
        )
    if "id" not in decoded:
        return Notification(method, params)
    if known_id is None:
        raise McpError(
            INVALID_REQUEST,
            'Invalid Request: "id" must be a string or an integer',
            http_status=400,
        )
    return Request(known_id, method, params)


def result_message(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}


def error_message(request_id: RequestId | None, error: McpError) -> dict[str, Any]:
    """``id`` is ``null`` when the request's id could not be read."""
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error.error_object()}


def notification_message(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "method": method, "params": params}


def sse_event(message: dict[str, Any]) -> bytes:
    """One SSE ``message`` event carrying one JSON-RPC message."""
    return b"event: message\ndata: " + dumps(message) + b"\n\n"
