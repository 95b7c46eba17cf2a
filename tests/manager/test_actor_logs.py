"""``GET /v1/actors/{name}/logs`` end to end: a real manager asks real agents (signed with the
agent's keypair) for the logs of replicas whose handler prints known lines."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ai.backend.common.dto.agent import ReplicaStatus
from ai.backend.common.dto.manager_api import LogLine
from ai.backend.manager.clients.agent_logs import AgentEndpoint, AgentLogClient
from ai.backend.manager.repositories.log_sources import AgentCredential, ReplicaLogSource
from ai.backend.manager.services.actor_logs import TAIL_WINDOW, ActorLogStream, LogRequest
from ai.backend.testutils.control_plane import Cluster, Keypair, SignedClient, insert_keypair
from ai.backend.testutils.gateway import deploy
from ai.backend.testutils.waiting import wait_until

FOLLOW_LIMIT_ENV = "BACKEND_LOGS__MAX_FOLLOWED_STREAMS_PER_KEY"  # [logs] in the config

READ_TIMEOUT = 20.0
FOLLOW_LIMIT = 2  # followed streams per access key, as this module's manager is configured
PRINTER = '''"""Prints each of its payload's lines on stdout (the replica's runtime log)."""


def shout(payload):
    for line in payload["lines"]:
        print(line, flush=True)
    return {"printed": len(payload["lines"])}
'''


@pytest.fixture
def manager_extra_env() -> dict[str, str]:
    """The conftest's manager, allowing an access key ``FOLLOW_LIMIT`` followed streams at once
    (the other tests follow one at a time)."""
    return {FOLLOW_LIMIT_ENV: str(FOLLOW_LIMIT)}


@pytest.fixture
def printer_path(tmp_path: Path) -> str:
    """A folder holding the module ``log_printer`` (handler ``log_printer:shout``)."""
    folder = tmp_path / "handlers"
    folder.mkdir()
    (folder / "log_printer.py").write_text(PRINTER)
    return str(folder)


async def _deploy_printer(cluster: Cluster, printer_path: str, replicas: int = 1) -> list[str]:
    """The ``shouter`` actor on agent ``node-1``; its replica ids, oldest first."""
    await cluster.add_agent("node-1")
    await deploy(
        cluster,
        "shouter",
        "log_printer:shout",
        pythonpath=[printer_path],
        scaling={"min_replicas": replicas, "max_replicas": replicas},
    )
    return [r["id"] for r in (await cluster.actor("shouter"))["replicas"]]


async def _print(cluster: Cluster, lines: list[str]) -> None:
    job_id = uuid.uuid4().hex
    await cluster.plane.publish(["shouter"], {"lines": lines}, job_id=job_id)
    event = await cluster.plane.wait_terminal(job_id, timeout=30)
    assert event["kind"] == "succeeded", event


async def _logs(cluster: Cluster, query: str, keypair: Keypair | None = None) -> tuple[int, Any]:
    response = await cluster.manager.client(keypair).get(f"/v1/actors/shouter/logs?{query}")
    if response.status == 200:
        assert isinstance(response.body, str | None)
        return 200, [json.loads(line) for line in (response.body or "").splitlines()]
    return response.status, response.body


@asynccontextmanager
async def _followed(client: SignedClient, tail: int = 0) -> AsyncIterator[aiohttp.ClientResponse]:
    """The shouter's runtime log, followed while inside."""
    path = f"/v1/actors/shouter/logs?process=runtime&tail={tail}&follow=1"
    async with client.session.get(
        client.endpoint + path, headers=client.headers("GET", path, b"")
    ) as response:
        yield response


async def _next_line(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next line of a followed stream that is not a heartbeat."""
    while True:
        raw = await asyncio.wait_for(response.content.readline(), READ_TIMEOUT)
        assert raw, "the stream ended"
        if raw.strip():
            line: dict[str, Any] = json.loads(raw)
            return line


def _runtime(replica_id: str, *lines: str) -> list[dict[str, str]]:
    return [{"replica_id": replica_id, "process": "runtime", "line": line} for line in lines]


async def test_tail_gives_the_lines_the_handler_printed(
    cluster: Cluster, printer_path: str
) -> None:
    [replica] = await _deploy_printer(cluster, printer_path)
    await _print(cluster, ["alpha", "beta", "gamma"])
    assert await _logs(cluster, "process=runtime&tail=2") == (
        200,
        _runtime(replica, "beta", "gamma"),
    )
    status, lines = await _logs(cluster, "tail=3")
    assert status == 200
    assert lines[:3] == _runtime(replica, "alpha", "beta", "gamma")
    assert lines[3:] and {(line["replica_id"], line["process"]) for line in lines[3:]} == {
        (replica, "sidecar")
    }


async def test_follow_receives_lines_printed_after_the_request_until_the_agent_stops(
    cluster: Cluster, printer_path: str
) -> None:
    [replica] = await _deploy_printer(cluster, printer_path)
    await _print(cluster, ["printed before"])
    async with _followed(cluster.manager.client(), tail=1) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        # the tail's line has come: the agent follows from after it
        assert await _next_line(response) == _runtime(replica, "printed before")[0]
        await _print(cluster, ["printed while followed"])
        assert await _next_line(response) == _runtime(replica, "printed while followed")[0]
        cluster.agents["node-1"].kill(signal.SIGTERM)
        rest = await asyncio.wait_for(response.content.read(), READ_TIMEOUT)
    assert [json.loads(line) for line in rest.splitlines() if line.strip()] == [
        {"replica_id": replica, "process": "error", "line": "agent node-1 ended the log stream"}
    ]


async def test_replicas_come_one_after_the_other_and_a_prefix_picks_one(
    cluster: Cluster, printer_path: str
) -> None:
    first, second = await _deploy_printer(cluster, printer_path, replicas=2)
    status, lines = await _logs(cluster, "tail=1")
    assert status == 200
    assert [(line["replica_id"], line["process"]) for line in lines] == [
        (first, "runtime"),
        (first, "sidecar"),
        (second, "runtime"),
        (second, "sidecar"),
    ]
    suffix = second.removeprefix("shouter-")
    status, lines = await _logs(cluster, f"replica={suffix[:6]}&process=sidecar&tail=1")
    assert (status, [line["replica_id"] for line in lines]) == (200, [second])
    status, body = await _logs(cluster, "replica=shouter-")
    assert (status, body["code"]) == (400, "invalid_input")
    assert body["error"] == (
        f"replica: 'shouter-' names several replicas of 'shouter': {first}, {second}"
    )


async def test_an_agent_that_does_not_answer_is_an_error_line(
    cluster: Cluster, printer_path: str
) -> None:
    [replica] = await _deploy_printer(cluster, printer_path)
    agent = cluster.agents["node-1"]
    agent.kill(signal.SIGTERM)  # its replicas keep running; its API is gone
    agent.wait(10)
    status, lines = await _logs(cluster, f"replica={replica}")
    assert status == 200
    [line] = lines
    assert (line["replica_id"], line["process"]) == (replica, "error")
    assert line["line"].startswith("agent node-1 unreachable: ")


async def test_an_actor_without_placed_replicas_has_an_empty_log(cluster: Cluster) -> None:
    await cluster.add_agent("node-1")
    spec = {"handler": "log_printer:shout", "resources": {"cpu": 64}}  # more than node-1 has
    assert (await cluster.manager.client().put("/v1/actors/shouter", spec)).status == 201
    assert await _logs(cluster, "tail=5") == (200, [])


async def test_unknown_actor_unknown_replica_and_bad_queries_are_refused(
    cluster: Cluster, printer_path: str
) -> None:
    await _deploy_printer(cluster, printer_path)
    client = cluster.manager.client()
    missing = await client.get("/v1/actors/nope/logs")
    assert (missing.status, missing.body) == (
        404,
        {"error": "actor 'nope' not found", "code": "actor_not_found"},
    )
    assert await _logs(cluster, "replica=ffff") == (
        404,
        {"error": "replica: actor 'shouter' has no replica 'ffff'", "code": "replica_not_found"},
    )
    assert await _logs(cluster, "tail=10001") == (
        400,
        {"error": "tail: expected a whole number from 0 to 10000", "code": "invalid_input"},
    )
    assert await _logs(cluster, "follow=2") == (
        400,
        {"error": "follow: expected 0 or 1, got '2'", "code": "invalid_input"},
    )


async def test_the_logs_need_a_users_signature(cluster: Cluster, printer_path: str) -> None:
    await _deploy_printer(cluster, printer_path)
    forged = Keypair(cluster.manager.admin.access_key, "not-the-secret")
    status, body = await _logs(cluster, "tail=1", forged)
    assert (status, body["code"]) == (401, "invalid_signature")
    status, body = await _logs(cluster, "tail=1", cluster.agent_keys)
    assert (status, body["code"]) == (403, "role_not_allowed")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{cluster.manager.endpoint}/v1/actors/shouter/logs") as response:
            assert response.status == 401


async def test_an_access_key_follows_at_most_its_limit_of_streams_at_once(
    cluster: Cluster, printer_path: str
) -> None:
    await _deploy_printer(cluster, printer_path)
    client = cluster.manager.client()
    async with AsyncExitStack() as streams:
        for _ in range(FOLLOW_LIMIT):
            response = await streams.enter_async_context(_followed(client))
            assert response.status == 200
        assert await _logs(cluster, "process=runtime&tail=0&follow=1") == (
            429,
            {
                "error": f"follow: this access key already follows {FOLLOW_LIMIT} log streams,"
                " the most it may at once; close one first",
                "code": "too_many_requests",
            },
        )
        assert await _logs(cluster, "tail=0") == (200, [])  # a tail is not a followed stream
        other_user = await insert_keypair(cluster.manager.database_url, "user")
        async with _followed(cluster.manager.client(other_user)) as response:
            assert response.status == 200  # each access key has its own limit

    async def follows_again() -> bool:
        async with _followed(client) as response:
            return response.status == 200

    # the manager lets a stream go once it notices its caller left (within a second)
    await wait_until(follows_again, what="a closed stream to free its place")


class _HeldBackAgents(AgentLogClient):
    """Agents whose replicas each have the lines ``"{replica} 1"`` … ``"{replica} 3"``; the
    third line of ``r-00`` comes once ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.asked: list[str] = []

    async def lines(
        self, agent: AgentEndpoint, replica_id: str, *, process: str, tail: int, follow: bool
    ) -> AsyncGenerator[LogLine, None]:
        self.asked.append(replica_id)
        for number in (1, 2, 3):
            if (replica_id, number) == ("r-00", 3):
                await self.release.wait()
            yield LogLine(replica_id=replica_id, process=process, line=f"{replica_id} {number}")


async def test_a_tail_passes_lines_on_as_they_arrive_replica_after_replica() -> None:
    replicas = [f"r-{i:02}" for i in range(TAIL_WINDOW + 2)]
    credential = AgentCredential("AKIAFAKE", "secret")
    sources = [
        ReplicaLogSource(r, ReplicaStatus.RUNNING, "node-1", "http://127.0.0.1:9", credential)
        for r in replicas
    ]
    agents = _HeldBackAgents()
    request = LogRequest(replica=None, process="runtime", tail=3, follow=False)
    stream = ActorLogStream(client=agents, sources=sources, request=request, idle_tick=1.0)
    async with aclosing(stream.batches()) as batches:
        received: list[str] = []
        while len(received) < 2:  # r-00's first lines, before its tail has ended
            received += [line.line for line in await asyncio.wait_for(anext(batches), 5)]
        assert received == ["r-00 1", "r-00 2"]
        assert agents.asked == replicas[:TAIL_WINDOW]  # read ahead: the next few, no more
        agents.release.set()
        received += [line.line async for batch in batches for line in batch]
    assert received == [f"{r} {number}" for r in replicas for number in (1, 2, 3)]
