"""Gateway processes for tests: ``gw start-server`` on a free port against the test's database
and Redis prefix, with tools from a YAML file, and a small client for its REST API and SSE; and
stacks (a manager, agents, actors, gateways) that the tests of one module share."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import aiohttp
import yaml
from redis.asyncio import Redis

import ai.backend.gateway.cli  # noqa: F401  (spawned below: Pants packs it with the tests)
from ai.backend.common.db.engine import drop_database
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.manager.models.schema import oneshot

from .control_plane import (
    Cluster,
    RunningManager,
    insert_keypair,
    kill_processes_mentioning,
    manager_env,
    start_manager,
    wait_healthy,
)
from .dataplane import DataPlane
from .processes import Child, ProcessGroup
from .services import free_port, postgres_url, redis_url, unique_name

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

    def with_session(self, session: aiohttp.ClientSession) -> RunningGateway:
        """This gateway reached through ``session`` (a client of the caller's event loop)."""
        return replace(self, session=session)

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


# the replicas the test tools (``TEST_TOOLS``) call: actor name → handler
PIPELINE_ACTORS = {
    "doubler": "examples.pipeline:double",
    "incrementer": "examples.pipeline:increment",
}


async def gateway_on_actors(
    cluster: Cluster, actors: Mapping[str, str], tools: list[dict[str, Any]] | None = None
) -> RunningGateway:
    """An agent running one replica of each actor (name → handler, concurrency 8) and a gateway
    with ``tools`` (default: the test tools)."""
    await cluster.add_agent("node-1")
    await asyncio.gather(
        *(deploy(cluster, name, handler, concurrency=8) for name, handler in actors.items())
    )
    return await gateway_for(cluster, write_tools(cluster.workdir / "tools.yaml", tools))


# Stacks shared by the tests of one module. Starting a manager, an agent, actor replicas and a
# gateway costs seconds of CPU (their imports, mostly); tests that only call what the stack
# serves, and assert only on what they caused, share one stack per module instead.

BuiltT = TypeVar("BuiltT")

# A shared stack's manager schedules at its own default period, not every 0.2 s as the manager
# of tests/conftest.py does for tests of scheduling: an apply wakes the control loop anyway, and
# a pass every 0.2 s costs a tenth of a core for as long as the module runs.
SHARED_MANAGER_SETTINGS: Final = {"BACKEND_SCHEDULER__INTERVAL": "1s"}


@dataclass(frozen=True)
class SharedStack(Generic[BuiltT]):
    """A cluster started once for the tests of a module, on a database and Redis prefix of that
    module alone, with what the module's ``build`` added (agents, actors, gateways): ``built``
    is what ``build`` returned. The clients of ``cluster`` (and of ``built``) belong to an event
    loop of the stack's own; a test reaches the processes through :meth:`attached`."""

    cluster: Cluster
    built: BuiltT
    shared_children: tuple[Child, ...]  # every process started by the build: none may exit

    @contextlib.asynccontextmanager
    async def attached(self) -> AsyncIterator[Cluster]:
        """The stack's cluster with clients of the running event loop (the test's): the same
        processes, workdir and agents. Fails at once when a shared process has exited."""
        for child in self.shared_children:
            if not child.alive():
                raise AssertionError(
                    f"{child.name} of the module's shared stack exited:\n{child.log()[-4000:]}"
                )
        redis = Redis.from_url(redis_url(), decode_responses=False)
        try:
            async with aiohttp.ClientSession() as session:
                manager = replace(self.cluster.manager, session=session)
                plane = replace(self.cluster.plane, redis=redis)
                yield replace(self.cluster, manager=manager, plane=plane)
        finally:
            await redis.aclose()


@contextlib.contextmanager
def shared_stack(
    workdir: Path, build: Callable[[Cluster], Coroutine[Any, Any, BuiltT]]
) -> Iterator[SharedStack[BuiltT]]:
    """Start a manager on a fresh database and Redis prefix, run ``build`` on its cluster, and
    yield the stack (for a module-scoped fixture); afterwards stop it as the ``cluster`` fixture
    of tests/conftest.py does: agents and replicas killed, processes stopped, Redis keys
    deleted, database dropped. Runs in an event loop of its own, so that no test's loop has to
    outlive the test."""
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        teardown = contextlib.AsyncExitStack()
        try:
            cluster = runner.run(_open_cluster(workdir, teardown))
            built = runner.run(build(cluster))
            yield SharedStack(cluster, built, tuple(cluster.processes.children))
        finally:
            runner.run(teardown.aclose())


async def _open_cluster(workdir: Path, teardown: contextlib.AsyncExitStack) -> Cluster:
    """What tests/conftest.py's ``cluster`` fixture and those it depends on set up, with their
    cleanup pushed onto ``teardown``."""
    database_url = postgres_url(unique_name("test_bai_"))
    teardown.push_async_callback(drop_database, database_url)
    await oneshot(database_url)
    prefix = unique_name("test:bai:") + ":"
    redis = Redis.from_url(redis_url(), decode_responses=False)
    teardown.push_async_callback(_delete_keys_and_close, redis, prefix)
    processes = ProcessGroup(workdir)
    teardown.callback(processes.stop_all)
    port = free_port()
    env = manager_env(
        db_url=database_url,
        redis_url=redis_url(),
        prefix=prefix,
        port=port,
        extra=SHARED_MANAGER_SETTINGS,
    )
    child = await start_manager(processes, "manager", env)
    admin = await insert_keypair(database_url, "admin")
    session = await teardown.enter_async_context(aiohttp.ClientSession())
    manager = RunningManager(
        child, f"http://127.0.0.1:{port}", database_url, prefix, admin, session
    )
    agent_keys = await insert_keypair(database_url, "agent")
    plane = DataPlane(processes, redis, RedisKeys(prefix), workdir)
    cluster = Cluster(manager, plane, processes, workdir, agent_keys, {})
    teardown.callback(_stop_agents_and_replicas, cluster)
    return cluster


def _stop_agents_and_replicas(cluster: Cluster) -> None:
    for agent_id in list(cluster.agents):
        cluster.stop_agent_and_replicas(agent_id)
    for state_dir in cluster.workdir.glob("state-*"):
        kill_processes_mentioning(str(state_dir))


async def _delete_keys_and_close(redis: Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
