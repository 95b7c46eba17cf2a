"""Gateway processes for tests: ``gw start-server`` on a free port against the test's database
and Redis prefix, with tools from a YAML file, and a small client for its REST API and SSE."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

import ai.backend.gateway.cli  # noqa: F401  (spawned below: Pants packs it with the tests)

from .control_plane import Cluster, wait_healthy
from .processes import Child, ProcessGroup
from .services import free_port, redis_url

# Tools of the gateway's tests, on actors a test deploys with :func:`deploy`.
TEST_TOOLS: list[dict[str, Any]] = [
    {
        "name": "double_then_increment",
        "description": "Doubles a number, then adds five.",
        "parameters": {"value": {"type": "integer", "description": "the input"}},
        "required": ["value"],
        "route": ["doubler", "incrementer"],
        "progress": True,
        "timeout": "30s",
        "wait": "10s",
    },
    {
        "name": "double",
        "description": "Doubles a number.",
        "parameters": {"value": {"type": "integer", "default": 21}},
        "route": ["doubler"],
        "timeout": "30s",
    },
]


def write_tools(path: Path, tools: list[dict[str, Any]] | None = None) -> Path:
    path.write_text(yaml.safe_dump({"tools": TEST_TOOLS if tools is None else tools}))
    return path


def gateway_env(
    *,
    db_url: str,
    prefix: str,
    port: int,
    tools: Path | None,
    gateway_id: str = "gw-test-1",
    auth_mode: str = "none",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {
        "BACKEND_DB__URL": db_url,
        "BACKEND_REDIS__URL": redis_url(),
        "BACKEND_REDIS__PREFIX": prefix,
        "BACKEND_API__PORT": str(port),
        "BACKEND_AUTH__MODE": auth_mode,
        "BACKEND_JOBS__GATEWAY_ID": gateway_id,
        "BACKEND_JOBS__SWEEP_INTERVAL": "0.2s",
        "BACKEND_JOBS__HEARTBEAT": "1s",
        "BACKEND_JOBS__TRIM_INTERVAL": "0.5s",
        "BACKEND_JOBS__PUBLISH_RETRY_AFTER": "1s",
    }
    if tools is not None:
        env["BACKEND_TOOLS__PATH"] = str(tools)
    return {**env, **(extra or {})}


@dataclass(frozen=True)
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]


@dataclass
class RunningGateway:
    child: Child
    url: str
    env: dict[str, str]
    session: aiohttp.ClientSession
    headers: dict[str, str] = field(default_factory=dict)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {**self.headers, "Content-Type": "application/json"} if data else self.headers
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.request("POST", path, body if body is not None else {})

    async def sse(
        self, job_id: str, *, last_event_id: int | None = None, timeout: float = 30
    ) -> list[SseEvent]:
        """Every event of the job's stream until the server closes it."""
        headers = dict(self.headers)
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        events: list[SseEvent] = []
        async with self.session.get(
            f"{self.url}/v1/jobs/{job_id}/events",
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"] == "text/event-stream"
            fields: dict[str, str] = {}
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "id" in fields:
                        events.append(
                            SseEvent(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                        )
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
        return events


async def start_gateway(
    group: ProcessGroup, name: str, env: Mapping[str, str], session: aiohttp.ClientSession
) -> RunningGateway:
    """Start ``gw start-server`` and wait for its ``/health``."""
    child = group.start(name, ["gw", "start-server"], env=env)
    url = f"http://127.0.0.1:{env['BACKEND_API__PORT']}"
    await wait_healthy(f"{url}/health", child)
    return RunningGateway(child, url, dict(env), session)


async def gateway_for(
    cluster: Cluster, tools: Path | None, *, name: str = "gateway", **options: Any
) -> RunningGateway:
    """A gateway on the cluster's database and Redis prefix."""
    env = gateway_env(
        db_url=cluster.manager.database_url,
        prefix=cluster.manager.prefix,
        port=free_port(),
        tools=tools,
        **options,
    )
    return await start_gateway(cluster.processes, name, env, cluster.manager.session)


async def deploy(cluster: Cluster, name: str, handler: str, **spec: Any) -> None:
    """Apply an actor (``handler`` from the sandbox root) and wait for its replica."""
    body = {"handler": handler, "pythonpath": [str(Path.cwd())], "timeout": "10s", **spec}
    response = await cluster.manager.client().put(f"/v1/actors/{name}", body)
    assert response.status in (200, 201), response.body
    await cluster.running_replicas(name, int(spec.get("scaling", {}).get("min_replicas", 1)))
