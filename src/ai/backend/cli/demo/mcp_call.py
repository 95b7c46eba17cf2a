"""One MCP ``tools/call`` with progress, as an MCP client sends it (revision 2026-07-28,
stateless): the demo shows that what an AI agent sees is the same job the REST API runs.

Kept to what the demo needs (no session, no listing); real clients use the ``mcp`` SDK, as
``docs/mcp.md`` shows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

PROTOCOL_VERSION: Final = "2026-07-28"


@dataclass
class McpCallOutcome:
    """The final JSON-RPC result of the call and every progress notification before it."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    progress: list[dict[str, Any]] = field(default_factory=list)


def _request(tool: str, arguments: dict[str, Any], progress_token: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments,
            "_meta": {
                "progressToken": progress_token,
                "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "backend.ai-demo", "version": "1"},
            },
        },
    }


def _take(outcome: McpCallOutcome, message: dict[str, Any], on_progress: ProgressHook) -> None:
    if message.get("method") == "notifications/progress":
        params = message.get("params", {})
        outcome.progress.append(params)
        on_progress(params)
    elif "result" in message:
        outcome.result = message["result"]
    elif "error" in message:
        outcome.error = message["error"]


ProgressHook = Callable[[dict[str, Any]], None]


async def call_tool(
    http: aiohttp.ClientSession,
    mcp_url: str,
    token: str,
    tool: str,
    arguments: dict[str, Any],
    *,
    on_progress: ProgressHook = lambda _: None,
) -> McpCallOutcome:
    """POST the call and read its answer: plain JSON, or an SSE stream of progress
    notifications ending with the result."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": PROTOCOL_VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
    }
    body = json.dumps(_request(tool, arguments, "demo")).encode()
    outcome = McpCallOutcome()
    async with http.post(mcp_url, data=body, headers=headers) as response:
        if response.content_type != "text/event-stream":
            text = await response.text()
            try:
                _take(outcome, json.loads(text), on_progress)
            except ValueError:
                outcome.error = {"message": f"HTTP {response.status}: {text[:200]}"}
            return outcome
        data: list[str] = []
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif not line and data:
                _take(outcome, json.loads("\n".join(data)), on_progress)
                data = []
    return outcome
