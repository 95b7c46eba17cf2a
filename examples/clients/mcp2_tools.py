"""List the gateway's MCP tools and call one with progress, with the official MCP SDK 2.x
(``mcp.Client``; ``--mode auto`` finds the protocol era by itself):

    python examples/clients/mcp2_tools.py http://127.0.0.1:8090/mcp double_then_increment \\
        '{"value": 10}'

``BACKEND_GATEWAY_TOKEN`` (an API token, ``mgr token create``) goes in the Authorization header.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, tool: str, arguments: dict[str, object], mode: str) -> None:
    token = os.environ.get("BACKEND_GATEWAY_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            print("protocol:", client.protocol_version)
            listed = await client.list_tools()
            print("tools:", ", ".join(t.name for t in listed.tools))

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                print(f"progress {progress}/{total}: {message or ''}")

            result = await client.call_tool(tool, arguments, progress_callback=on_progress)
            print("result:", json.dumps(result.structured_content), "error:", result.is_error)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("tool")
    parser.add_argument("arguments", type=json.loads)
    parser.add_argument("--mode", default="auto", choices=["auto", "legacy", "2026-07-28"])
    options = parser.parse_args()
    asyncio.run(main(options.url, options.tool, options.arguments, options.mode))
