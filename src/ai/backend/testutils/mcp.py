"""MCP from tests: the official SDK clients of ``tests/gateway/clients`` (pex binaries of their
own resolves, each SDK unmodified) run as child processes, and raw JSON-RPC over aiohttp for
what no SDK sends (bad headers, foreign origins, malformed bodies)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

# where `runtime_package_dependencies` puts the clients in the test's sandbox
MCP1_CLIENT: Final = Path("tests/gateway/clients/mcp1_client.pex")
MCP2_CLIENT: Final = Path("tests/gateway/clients/mcp2_client.pex")

MODERN_VERSION: Final = "2026-07-28"
LEGACY_VERSION: Final = "2025-11-25"
MODERN_META: Final = {
    "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
}


@dataclass(frozen=True)
class ClientReport:
    """What a client program printed: the negotiated revision, the server's identity, and one
    entry per operation (``{"result": ...}`` or ``{"error": {...}}``, with ``progress``)."""

    protocol_version: str
    server_info: dict[str, Any] | None
    results: list[dict[str, Any]]


def client_environment() -> dict[str, str]:
    """The environment of a client pex: the test's own without what configures the test's pex
    and Python path (so the client builds its virtualenv once, in the default ``PEX_ROOT``)."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PEX") and name not in ("PYTHONPATH", "PYTHONHOME")
    }


async def run_client(
    client: Path,
    url: str,
    operations: list[dict[str, Any]],
    *,
    mode: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> ClientReport:
    """Run an SDK client program and return its report; fails the test with its stderr when it
    does not exit 0 in ``timeout`` seconds."""
    command = [sys.executable, str(client.resolve()), url, json.dumps(operations)]
    if mode is not None:
        command += ["--mode", mode]
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}={value}"]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=client_environment(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{client.name} did not finish within {timeout} s") from None
    if process.returncode != 0:
        raise AssertionError(
            f"{client.name} exited with {process.returncode}:\n{stderr.decode(errors='replace')}"
        )
    report = json.loads(stdout)
    return ClientReport(report["protocol_version"], report["server_info"], report["results"])


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or None for an empty body


class RawMcp:
    """JSON-RPC posts to ``/mcp`` exactly as given (headers included)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def send(
        self,
        method: str = "POST",
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RawReply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Accept": "application/json, text/event-stream", **(headers or {})}
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.url, data=data, headers=sent) as response:
            text = await response.read()
            parsed = (
                json.loads(text) if text and response.content_type == "application/json" else None
            )
            return RawReply(response.status, dict(response.headers), parsed)

    async def modern(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        request_id: int | str = 1,
        headers: Mapping[str, str] | None = None,
    ) -> RawReply:
        """A 2026-07-28 request with the envelope and routing headers a client must send
        (``headers`` override them)."""
        body_params = {**(params or {}), "_meta": dict(MODERN_META)}
        sent = {"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": method}
        if method == "tools/call":
            sent["Mcp-Name"] = str(body_params.get("name"))
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": body_params}
        return await self.send(body=body, headers={**sent, **(headers or {})})

    async def initialize(self, *, version: str = LEGACY_VERSION) -> str:
        """Open a legacy session; its id."""
        reply = await self.send(
            body={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": {"name": "raw-test", "version": "0"},
                },
            }
        )
        assert reply.status == 200, reply
        return reply.headers["Mcp-Session-Id"]

    async def legacy(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None,
        request_id: int | str | None = 1,
        headers: Mapping[str, str] | None = None,
    ) -> RawReply:
        """A request (or, with ``request_id=None``, a notification) of a legacy session."""
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        if request_id is not None:
            body["id"] = request_id
        sent = {"MCP-Protocol-Version": LEGACY_VERSION}
        if session_id is not None:
            sent["Mcp-Session-Id"] = session_id
        return await self.send(body=body, headers={**sent, **(headers or {})})
