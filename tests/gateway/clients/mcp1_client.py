"""An MCP client built on the mcp 1.x SDK, unmodified (``streamablehttp_client`` +
``ClientSession``, the handshake era): runs the operations given as JSON against a server and
prints what happened as one JSON object.

    mcp1_client.pex URL OPERATIONS_JSON [--header NAME=VALUE ...]

Operations: ``{"op": "list"}``, ``{"op": "ping"}``, ``{"op": "call", "tool": NAME,
"arguments": {...}, "progress": true, "timeout": SECONDS, "cancel": true}``. Each answers
``{"result": ...}`` or ``{"error": {"code", "message", "type"}}``; calls also list the progress
notifications received, ``"progress": [[progress, total, message], ...]``. With ``"cancel"``,
the client sends ``notifications/cancelled`` for the call once its first progress notification
has arrived (mcp 1.x sends none by itself, not even on a timeout)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from typing import Any

from mcp import ClientSession, types
from mcp.client.streamable_http import streamablehttp_client


def _error(e: BaseException) -> dict[str, Any]:
    error = getattr(e, "error", None)
    return {
        "code": getattr(error, "code", None),
        "message": getattr(error, "message", None) or str(e),
        "type": type(e).__name__,
    }


async def _run(session: ClientSession, operation: dict[str, Any]) -> dict[str, Any]:
    kind = operation["op"]
    received: list[list[Any]] = []
    request_id = session._request_id  # the id the next request takes (the SDK counts from 0)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append([progress, total, message])
        if operation.get("cancel") and len(received) == 1:
            params = types.CancelledNotificationParams(requestId=request_id, reason="test")
            notice = types.CancelledNotification(params=params)
            await session.send_notification(types.ClientNotification(notice))

    try:
        if kind == "list":
            listed = await session.list_tools()
            return {"result": listed.model_dump(mode="json", by_alias=True, exclude_none=True)}
        if kind == "ping":
            await session.send_ping()
            return {"result": {}}
        if kind == "call":
            timeout = operation.get("timeout")
            result = await session.call_tool(
                operation["tool"],
                operation.get("arguments"),
                read_timeout_seconds=None if timeout is None else timedelta(seconds=timeout),
                progress_callback=on_progress if operation.get("progress") else None,
            )
            dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True)
            return {"result": dumped, "progress": received}
        raise ValueError(f"unknown operation {kind!r}")
    except Exception as e:
        return {"error": _error(e), "progress": received}


async def main(url: str, operations: list[dict[str, Any]], headers: dict[str, str]) -> None:
    async with streamablehttp_client(url, headers=headers) as (read, write, _):
        async with ClientSession(read, write) as session:
            initialized = await session.initialize()
            results = [await _run(session, operation) for operation in operations]
    report = {
        "protocol_version": initialized.protocolVersion,
        "server_info": initialized.serverInfo.model_dump(mode="json"),
        "results": results,
    }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("operations")
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    header_pairs = dict(item.split("=", 1) for item in args.header)
    asyncio.run(main(args.url, json.loads(args.operations), header_pairs))
