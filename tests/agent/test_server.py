"""The agent server against a fake manager: signed heartbeats, reconciliation, /health and
/metrics, and a manager that goes away."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ai.backend.agent.clients.processes import process_start_time
from ai.backend.agent.config import AgentConfig, load_agent_config
from ai.backend.agent.server import AgentServer
from ai.backend.common.auth.hmac_signing import SignedParts, parse_authorization, verify_signature
from ai.backend.common.dto.agent import SYSTEM_CONTEXT, AgentHeartbeat
from ai.backend.testutils.agent import crew_replicas, wait_until
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.services import free_port, redis_url
from ai.backend.testutils.spawn import child_environment

ACCESS_KEY = "AKAGENTTEST"
SECRET_KEY = "agent-secret"


@dataclass
class FakeManager:
    """Answers heartbeats with ``desired`` after checking their signature."""

    desired: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[AgentHeartbeat] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def heartbeat(self, request: web.Request) -> web.Response:
        body = await request.read()
        verify_signature(
            authorization=parse_authorization(request.headers["Authorization"]),
            secret_key=SECRET_KEY,
            parts=SignedParts(
                request.method,
                request.path_qs,
                request.headers["X-BackendAI-Date"],
                request.headers["Host"],
                request.headers["Content-Type"],
                request.headers["X-BackendAI-Version"],
                body,
            ),
        )
        beat = AgentHeartbeat.model_validate_json(body, context=SYSTEM_CONTEXT)
        assert request.match_info["agent_id"] == beat.agent_id
        self.heartbeats.append(beat)
        return web.json_response({"desired": self.desired})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/agents/{agent_id}/heartbeat", self.heartbeat)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def last_statuses(self) -> dict[str, str]:
        if not self.heartbeats:
            return {}
        return {r.replica_id: r.status.value for r in self.heartbeats[-1].replicas}


@pytest.fixture
async def manager() -> AsyncIterator[FakeManager]:
    fake = FakeManager(port=free_port())
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def agent(
    manager: FakeManager, tmp_path: Path, key_prefix: str, redis_client: object
) -> AsyncIterator[AgentServer]:
    config = AgentConfig.model_validate(
        {
            "agent": {
                "id": "agent-test",
                "state_dir": str(tmp_path / "state"),
                "heartbeat_interval": "0.2s",
                "claim_idle": "1s",
            },
            "api": {"port": free_port()},
            "manager": {
                "api": f"http://127.0.0.1:{manager.port}",
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
            },
            "redis": {"url": redis_url(), "prefix": key_prefix},
            "resources": {"gpu_backend": "mock", "mock_gpus": [{"model": "A100-80G"}] * 2},
        }
    )
    server = AgentServer(config, base_env=child_environment())
    await server.start()
    yield server
    await server.reconciler.stop_all()
    await server.close()


async def get_json(agent: AgentServer, path: str) -> Any:
    url = f"http://127.0.0.1:{agent.config.api.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.json()


async def test_heartbeat_is_signed_and_carries_slots_and_devices(
    agent: AgentServer, manager: FakeManager
) -> None:
    await wait_until(lambda: bool(manager.heartbeats), what="a heartbeat")
    beat = manager.heartbeats[0]
    assert (beat.agent_id, beat.addr) == ("agent-test", f"http://127.0.0.1:{agent.config.api.port}")
    assert beat.slots_total.to_json()["cuda.device"] == "2"
    assert [d.id for d in beat.devices] == ["0", "1"]
    await wait_until(lambda: agent.manager_reachable, what="the manager reachable")
    health = await get_json(agent, "/health")
    assert health == {
        "status": "ok",
        "agent_id": "agent-test",
        "manager_reachable": True,
        "replicas": 0,
    }


async def test_replies_are_reconciled_and_reported(
    agent: AgentServer, manager: FakeManager
) -> None:
    manager.desired = [r.model_dump(mode="json") for r in crew_replicas()[:1]]
    await wait_until(
        lambda: manager.last_statuses() == {"crew-happy-end": "running"},
        what="the crew replica reported running",
    )
    metrics = await get_url_text(agent, "/metrics")
    assert 'backend_agent_replicas{status="running"} 1.0' in metrics
    assert 'backend_agent_gpu_slots_total{slot="cuda.shares"} 2.0' in metrics
    manager.desired = []
    await wait_until(lambda: manager.last_statuses() == {}, what="the crew replica gone")


async def test_unreachable_manager_keeps_the_replicas_running(
    agent: AgentServer, manager: FakeManager
) -> None:
    manager.desired = [r.model_dump(mode="json") for r in crew_replicas()[:1]]
    await wait_until(
        lambda: manager.last_statuses() == {"crew-happy-end": "running"},
        what="the crew replica running",
    )
    await manager.stop()
    await wait_until(lambda: not agent.manager_reachable, what="the manager unreachable")
    health = await get_json(agent, "/health")
    assert (health["manager_reachable"], health["replicas"]) == (False, 1)
    assert agent.metrics is not None and agent.metrics.heartbeat_failures >= 1
    report = agent.reconciler.reports()[0]
    assert report.status.value == "running"


async def get_url_text(agent: AgentServer, path: str) -> str:
    url = f"http://127.0.0.1:{agent.config.api.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.text()


async def test_stopped_agent_leaves_replicas_for_the_next_one(
    manager: FakeManager, tmp_path: Path, key_prefix: str, redis_client: object
) -> None:
    state_dir = tmp_path / "state"
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        f'[agent]\nid = "agent-cli"\nstate_dir = "{state_dir}"\nheartbeat_interval = "0.2s"\n'
        f"[api]\nport = {free_port()}\n"
        f'[manager]\napi = "http://127.0.0.1:{manager.port}"\n'
        f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n'
        f'[redis]\nurl = "{redis_url()}"\nprefix = "{key_prefix}"\n'
        '[resources]\ngpu_backend = "none"\n'
    )
    manager.desired = [r.model_dump(mode="json") for r in crew_replicas()[:1]]
    processes = ProcessGroup(tmp_path, env={"HOME": "/nonexistent-home"})
    agent = processes.start("agent", ["ag", "start-server", "--config", str(config_file)])
    try:
        try:
            await wait_until(
                lambda: not agent.alive()
                or manager.last_statuses() == {"crew-happy-end": "running"},
                what="the agent process running the crew replica",
            )
            assert agent.alive()
        except (TimeoutError, AssertionError):
            raise AssertionError(f"{manager.last_statuses()}\n{agent.log()}") from None
        agent.kill(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 20) == 0, agent.log()
    finally:
        processes.stop_all()
    state = json.loads((state_dir / "replicas" / "crew-happy-end" / "state.json").read_text())
    sidecar = state["processes"]["sidecar"]
    assert process_start_time(sidecar["pid"]) == sidecar["start_time"]  # still running

    config = load_agent_config(config_file).config
    successor = AgentServer(config, base_env=child_environment())
    await successor.start()
    try:
        assert successor.reconciler.supervisors["crew-happy-end"].pids() == {
            "sidecar": sidecar["pid"]
        }
        manager.desired = []
        await wait_until(
            lambda: process_start_time(sidecar["pid"]) is None, what="the adopted replica drained"
        )
    finally:
        await successor.reconciler.stop_all()
        await successor.close()
