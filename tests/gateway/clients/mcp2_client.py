"""An MCP client built on the mcp 2.x SDK, unmodified (``mcp.Client`` over streamable HTTP, in
``mode`` ``auto``, ``legacy`` or ``2026-07-28``): runs the operations given as JSON against a
server and prints what happened as one JSON object.

    mcp2_client.pex URL OPERATIONS_JSON [--mode MODE] [--header NAME=VALUE ...]

Operations: ``{"op": "list"}``, ``{"op": "ping"}`` (legacy only), ``{"op": "call", "tool":
NAME, "arguments": {...}, "progress": true, "timeout": SECONDS}``. Each answers ``{"result":
...}`` or ``{"error": {"code", "message", "type"}}``; calls also list the progress
notifications received, ``"progress": [[progress, total, message], ...]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def _error(e: BaseException) -> dict[str, Any]:
    error = getattr(e, "error", None)
    return {
        "code": getattr(error, "code", None),
        "message": getattr(error, "message", None) or str(e),
        "type": type(e).__name__,
    }


async def _run(client: Client, operation: dict[str, Any]) -> dict[str, Any]:
    kind = operation["op"]
    received: list[list[Any]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append([progress, total, message])

    try:
        if kind == "list":
            listed = await client.list_tools()
            return {"result": listed.model_dump(mode="json", by_alias=True, exclude_none=True)}
        if kind == "ping":
            await client.send_ping()
            return {"result": {}}
        if kind == "call":
            result = await client.call_tool(
                operation["tool"],
                operation.get("arguments"),
                read_timeout_seconds=operation.get("timeout"),
                progress_callback=on_progress if operation.get("progress") else None,
            )
            dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True)
            return {"result": dumped, "progress": received}
        raise ValueError(f"unknown operation {kind!r}")
    except Exception as e:
        return {"error": _error(e), "progress": received}


async def main(
    url: str, operations: list[dict[str, Any]], mode: str, headers: dict[str, str]
) -> None:
    async with create_mcp_http_client(headers=headers) as http_client:
        transport = streamable_http_client(url, http_client=http_client)
        async with Client(transport, mode=mode) as client:
            results = [await _run(client, operation) for operation in operations]
            info = client.server_info
            report = {
                "protocol_version": client.protocol_version,
                "server_info": None if info is None else info.model_dump(mode="json"),
                "results": results,
            }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("operations")
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    header_pairs = dict(item.split("=", 1) for item in args.header)
    asyncio.run(main(args.url, json.loads(args.operations), args.mode, header_pairs))
