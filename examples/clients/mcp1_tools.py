"""List the gateway's MCP tools and call one with progress, with the official MCP SDK 1.x
(``streamablehttp_client`` + ``ClientSession``, the handshake era):

    python examples/clients/mcp1_tools.py http://127.0.0.1:8090/mcp double_then_increment \\
        '{"value": 10}'

``BACKEND_GATEWAY_TOKEN`` (an API token, ``mgr token create``) goes in the Authorization header.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def main(url: str, tool: str, arguments: dict[str, object]) -> None:
    token = os.environ.get("BACKEND_GATEWAY_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with streamablehttp_client(url, headers=headers) as (read, write, _session_id):
        async with ClientSession(read, write) as session:
            initialized = await session.initialize()
            print("protocol:", initialized.protocolVersion)
            listed = await session.list_tools()
            print("tools:", ", ".join(t.name for t in listed.tools))

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                print(f"progress {progress}/{total}: {message or ''}")

            result = await session.call_tool(tool, arguments, progress_callback=on_progress)
            print("result:", json.dumps(result.structuredContent), "error:", result.isError)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("tool")
    parser.add_argument("arguments", type=json.loads)
    options = parser.parse_args()
    asyncio.run(main(options.url, options.tool, options.arguments))
