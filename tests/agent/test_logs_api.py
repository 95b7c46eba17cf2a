"""The agent's replica logs API, ``GET /v1/replicas/{id}/logs``: a real agent process over a
state dir holding a replica's log files, asked as the manager asks (signed with the agent's
keypair); and, in-process, the heartbeat of a followed stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ai.backend.agent.api.logs import ReplicaLogsApi
from ai.backend.agent.services.replica_logs import (
    MAX_LINE_BYTES,
    MAX_TAIL_BYTES,
    TRUNCATED_MARK,
    ReplicaLogReader,
)
from ai.backend.agent.services.request_auth import RequestVerifier
from ai.backend.common.web import error_middleware
from ai.backend.testutils.control_plane import AgentSetup, SignedClient, start_agent
from ai.backend.testutils.processes import Child, ProcessGroup
from ai.backend.testutils.services import free_port, redis_url
from ai.backend.testutils.waiting import wait_until

ACCESS_KEY = "AKIAAGENTLOGS"
SECRET_KEY = "agent-logs-secret"
REPLICA = "echo-0a1b2c3d"
READ_TIMEOUT = 10.0


@dataclass
class RunningAgent:
    child: Child
    url: str
    replica_dir: Path
    session: aiohttp.ClientSession

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> SignedClient:
        return SignedClient(self.session, self.url, access_key, secret_key)

    def log_file(self, process: str) -> Path:
        return self.replica_dir / f"{process}.log"

    def append(self, process: str, text: str) -> None:
        with open(self.log_file(process), "a") as file:
            file.write(text)


@pytest.fixture
async def agent(processes: ProcessGroup, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    """An agent process whose manager is not there (its API serves anyway) and whose state dir
    holds the replica ``REPLICA`` with a runtime log of 5 lines and a sidecar log of 2."""
    state_dir = tmp_path / "state"
    replica_dir = state_dir / "replicas" / REPLICA
    replica_dir.mkdir(parents=True)
    (replica_dir / "runtime.log").write_text("".join(f"runtime {i}\n" for i in range(1, 6)))
    (replica_dir / "sidecar.log").write_text("sidecar 1\nsidecar 2\n")
    setup = AgentSetup(
        agent_id="logs-node",
        manager_endpoint=f"http://127.0.0.1:{free_port()}",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        redis_url=redis_url(),
        prefix="test:agent-logs:",
        state_dir=str(state_dir),
        port=free_port(),
    )
    child = await start_agent(processes, setup, str(tmp_path))
    async with aiohttp.ClientSession() as session:
        yield RunningAgent(child, f"http://127.0.0.1:{setup.port}", replica_dir, session)


def _lines(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"replica_id": REPLICA, "process": p, "line": line} for p, line in pairs]


def _ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


async def _next_line(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next line of a followed stream that is not a heartbeat."""
    while True:
        raw = await asyncio.wait_for(response.content.readline(), READ_TIMEOUT)
        assert raw, "the stream ended"
        if raw.strip():
            line: dict[str, Any] = json.loads(raw)
            return line


async def test_tail_gives_the_last_lines_of_the_runtime_then_the_sidecar(
    agent: RunningAgent,
) -> None:
    path = f"/v1/replicas/{REPLICA}/logs?tail=2"
    client = agent.client()
    async with agent.session.get(
        agent.url + path, headers=client.headers("GET", path, b"")
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        body = await response.text()
    assert _ndjson(body) == _lines(
        ("runtime", "runtime 4"),
        ("runtime", "runtime 5"),
        ("sidecar", "sidecar 1"),
        ("sidecar", "sidecar 2"),
    )


async def test_tail_of_one_process_and_of_more_lines_than_there_are(agent: RunningAgent) -> None:
    response = await agent.client().get(f"/v1/replicas/{REPLICA}/logs?process=sidecar&tail=50")
    assert response.status == 200
    assert _ndjson(response.body) == _lines(("sidecar", "sidecar 1"), ("sidecar", "sidecar 2"))


async def test_tail_includes_an_unfinished_last_line_unless_following(agent: RunningAgent) -> None:
    agent.append("runtime", "half a li")
    response = await agent.client().get(f"/v1/replicas/{REPLICA}/logs?process=runtime&tail=2")
    assert _ndjson(response.body) == _lines(("runtime", "runtime 5"), ("runtime", "half a li"))
    path = f"/v1/replicas/{REPLICA}/logs?process=runtime&tail=1&follow=1"
    headers = agent.client().headers("GET", path, b"")
    async with agent.session.get(agent.url + path, headers=headers) as followed:
        assert await _next_line(followed) == _lines(("runtime", "runtime 5"))[0]
        agent.append("runtime", "ne\n")
        assert await _next_line(followed) == _lines(("runtime", "half a line"))[0]


async def test_a_tail_holds_only_the_lines_within_the_last_4_mib_of_a_log(
    agent: RunningAgent,
) -> None:
    kept = [f"{i:04} " + "z" * 1018 for i in range(MAX_TAIL_BYTES // 1024)]  # 1 KiB each
    agent.log_file("runtime").write_text("beyond the budget\n" + "".join(f"{k}\n" for k in kept))
    response = await agent.client().get(f"/v1/replicas/{REPLICA}/logs?process=runtime&tail=10000")
    assert response.status == 200
    assert _ndjson(response.body) == _lines(*(("runtime", k) for k in kept))


async def test_a_line_begun_before_the_last_4_mib_comes_out_cut_and_marked(
    agent: RunningAgent,
) -> None:
    # were the whole file read, "an early line" would come out too
    agent.log_file("runtime").write_bytes(b"an early line\n" + b"x" * (8 * 1024 * 1024))
    response = await agent.client().get(f"/v1/replicas/{REPLICA}/logs?process=runtime&tail=10000")
    assert response.status == 200
    assert _ndjson(response.body) == _lines(("runtime", "x" * MAX_LINE_BYTES + TRUNCATED_MARK))


async def test_tail_zero_gives_nothing(agent: RunningAgent) -> None:
    response = await agent.client().get(f"/v1/replicas/{REPLICA}/logs?tail=0")
    assert (response.status, response.body) == (200, None)


async def test_follow_streams_appended_lines_through_truncation_and_rotation(
    agent: RunningAgent,
) -> None:
    path = f"/v1/replicas/{REPLICA}/logs?tail=1&follow=1"
    headers = agent.client().headers("GET", path, b"")
    async with agent.session.get(agent.url + path, headers=headers) as response:
        assert response.status == 200
        assert [await _next_line(response) for _ in range(2)] == _lines(
            ("runtime", "runtime 5"), ("sidecar", "sidecar 2")
        )
        agent.append("sidecar", "sidecar 3\n")
        agent.append("runtime", "runtime 6\nruntime 7\n")
        received = [await _next_line(response) for _ in range(3)]
        assert sorted(received, key=lambda line: line["line"]) == _lines(
            ("runtime", "runtime 6"), ("runtime", "runtime 7"), ("sidecar", "sidecar 3")
        )
        agent.log_file("runtime").write_text("after truncation\n")
        assert await _next_line(response) == _lines(("runtime", "after truncation"))[0]
        os.rename(agent.log_file("sidecar"), agent.replica_dir / "sidecar.log.1")
        agent.append("sidecar", "in the new file\n")
        assert await _next_line(response) == _lines(("sidecar", "in the new file"))[0]


async def test_a_followed_stream_ends_when_the_agent_stops(agent: RunningAgent) -> None:
    path = f"/v1/replicas/{REPLICA}/logs?process=runtime&tail=0&follow=1"
    headers = agent.client().headers("GET", path, b"")
    async with agent.session.get(agent.url + path, headers=headers) as response:
        assert response.status == 200
        agent.child.kill(signal.SIGTERM)
        assert await asyncio.wait_for(response.content.read(), READ_TIMEOUT) == b""
    await wait_until(lambda: not agent.child.alive(), what="the agent to exit", timeout=10)
    assert agent.child.wait(1) == 0


@pytest.mark.parametrize(
    "keys",
    [("AKIAOTHERKEY", SECRET_KEY), (ACCESS_KEY, "not-the-secret")],
    ids=["another-access-key", "wrong-secret"],
)
async def test_a_request_not_signed_with_the_agents_keypair_is_refused(
    agent: RunningAgent, keys: tuple[str, str]
) -> None:
    response = await agent.client(*keys).get(f"/v1/replicas/{REPLICA}/logs")
    assert response.status == 401
    assert response.body["code"] == "invalid_signature"
    expected = "is not this agent's keypair" if keys[0] != ACCESS_KEY else "signature mismatch"
    assert expected in response.body["error"]


async def test_an_unsigned_request_is_refused(agent: RunningAgent) -> None:
    async with agent.session.get(f"{agent.url}/v1/replicas/{REPLICA}/logs") as response:
        assert response.status == 401
        assert await response.json() == {
            "error": "missing Authorization header (sign the request with HMAC)",
            "code": "invalid_signature",
        }


async def test_an_unknown_replica_is_404(agent: RunningAgent) -> None:
    response = await agent.client().get("/v1/replicas/echo-ffffffff/logs")
    assert response.status == 404
    assert response.body == {
        "error": "replica 'echo-ffffffff' not found on this agent",
        "code": "replica_not_found",
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("tail=-1", "tail: expected a whole number from 0 to 10000"),
        ("tail=10001", "tail: expected a whole number from 0 to 10000"),
        ("tail=ten", "tail: expected a whole number from 0 to 10000"),
        ("process=kernel", "process: expected runtime, sidecar or all, got 'kernel'"),
        ("follow=yes", "follow: expected 0 or 1, got 'yes'"),
        ("lines=3", "lines: unknown query parameter (expected process, tail, follow)"),
    ],
)
async def test_bad_query_values_are_400(agent: RunningAgent, query: str, message: str) -> None:
    response = await agent.client().get(f"/v1/replicas/{REPLICA}/logs?{query}")
    assert (response.status, response.body) == (400, {"error": message, "code": "invalid_input"})


async def test_a_quiet_followed_stream_carries_empty_heartbeat_lines(tmp_path: Path) -> None:
    (tmp_path / "replicas" / REPLICA).mkdir(parents=True)
    api = ReplicaLogsApi(
        reader=ReplicaLogReader(tmp_path, follow_interval=0.05),
        verifier=RequestVerifier(access_key=ACCESS_KEY, secret_key=SECRET_KEY),
        heartbeat_interval=0.2,
    )
    app = web.Application(middlewares=[error_middleware])
    api.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            client = SignedClient(session, str(server.make_url("")), ACCESS_KEY, SECRET_KEY)
            path = f"/v1/replicas/{REPLICA}/logs?follow=1"
            headers = client.headers("GET", path, b"")
            async with session.get(server.make_url(path), headers=headers) as response:
                assert response.status == 200
                for _ in range(2):
                    raw = await asyncio.wait_for(response.content.readline(), READ_TIMEOUT)
                    assert raw == b"\n"
    finally:
        await server.close()


def _log_reading_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("replica-logs")]


async def test_the_logs_are_read_on_threads_of_their_own_that_stop_with_the_server(
    tmp_path: Path,
) -> None:
    replica_dir = tmp_path / "replicas" / REPLICA
    replica_dir.mkdir(parents=True)
    (replica_dir / "runtime.log").write_text("one line\n")
    api = ReplicaLogsApi(
        reader=ReplicaLogReader(tmp_path),
        verifier=RequestVerifier(access_key=ACCESS_KEY, secret_key=SECRET_KEY),
    )
    app = web.Application(middlewares=[error_middleware])
    api.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            client = SignedClient(session, str(server.make_url("")), ACCESS_KEY, SECRET_KEY)
            response = await client.get(f"/v1/replicas/{REPLICA}/logs?process=runtime")
            assert _ndjson(response.body) == _lines(("runtime", "one line"))
        assert _log_reading_threads()
    finally:
        await server.close()
    await wait_until(lambda: not _log_reading_threads(), what="the log reading threads to end")
