"""The gateway when processes die or several run: a gateway killed mid-job, two replicas on
one database, a publish that was never confirmed, the events stream trimmed, tools reloaded."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import examples.failures  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import examples.pipeline  # noqa: F401
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from ai.backend.gateway.config import GatewayConfig
from ai.backend.gateway.server import build_app
from ai.backend.gateway.services.tools import ToolService
from ai.backend.testutils.control_plane import Cluster
from ai.backend.testutils.gateway import RunningGateway, deploy, gateway_for, write_tools
from ai.backend.testutils.waiting import wait_until

TERMINAL = {"succeeded", "failed", "cancelled"}


async def _all_ended(gateway: RunningGateway, job_ids: list[str], timeout: float = 40) -> list[Any]:
    async def ended() -> list[Any] | None:
        jobs = [(await gateway.get(f"/v1/jobs/{job_id}"))[1] for job_id in job_ids]
        return jobs if all(job["status"] in TERMINAL for job in jobs) else None

    found: list[Any] = await wait_until(ended, what=f"{len(job_ids)} jobs to end", timeout=timeout)
    return found


async def _quiet_events(cluster: Cluster) -> None:
    """Every job event was applied and acknowledged, and the stream trimmed below that."""
    redis, keys = cluster.plane.redis, cluster.plane.keys

    async def quiet() -> bool:
        [group] = await redis.xinfo_groups(keys.events)
        return (
            int(group["pending"]) == 0
            and int(group["lag"] or 0) == 0
            and await redis.xlen(keys.events) == 0
        )

    await wait_until(quiet, what="the events stream to be applied and trimmed", timeout=20)


async def test_a_gateway_killed_mid_job_comes_back_and_the_jobs_finish(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.add_agent("node-1")
    await deploy(cluster, "sleeper", "examples.failures:slow", concurrency=2)
    gateway = await gateway_for(cluster, None)
    job_ids = []
    for _ in range(12):
        status, handle = await gateway.post(
            "/v1/jobs", {"route": ["sleeper"], "arguments": {"seconds": 0.3}}
        )
        assert status == 202
        job_ids.append(handle["job_id"])
    gateway.child.kill(signal.SIGKILL)  # events keep coming while no gateway applies them
    gateway.child.wait(10)
    await cluster.plane.wait_quiescent(timeout=30)  # the actor finished every job meanwhile
    # another gateway takes over as the applier, with what the dead one left unacknowledged
    again = await gateway_for(cluster, None, name="gateway-again", gateway_id="gw-test-2")
    jobs = await _all_ended(again, job_ids)
    assert [job["status"] for job in jobs] == ["succeeded"] * 12
    assert [job["result"] for job in jobs] == [{"seconds": 0.3}] * 12
    for job_id in job_ids:
        events = await again.sse(job_id)
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert [e.event for e in events if e.event in TERMINAL] == ["succeeded"]
    await _quiet_events(cluster)


async def test_two_replicas_serve_one_job(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.add_agent("node-1")
    await deploy(cluster, "sleeper", "examples.failures:slow", concurrency=2)
    tools = write_tools(tmp_path / "tools.yaml")
    first = await gateway_for(cluster, tools, name="gw-a", gateway_id="gw-a")
    second = await gateway_for(cluster, tools, name="gw-b", gateway_id="gw-b")
    appliers = [(await gw.get("/health"))[1]["applier"] for gw in (first, second)]
    assert appliers == [True, False]  # one replica applies the job events, in stream order
    status, handle = await first.post(
        "/v1/jobs", {"route": ["sleeper"], "arguments": {"seconds": 0.5}}
    )
    job_id = handle["job_id"]
    on_b = asyncio.create_task(second.sse(job_id))  # opened on the replica that did not create it
    events_b = await on_b
    events_a = await first.sse(job_id)
    assert events_a == events_b
    assert events_b[-1].event == "succeeded" and events_b[-1].data["result"] == {"seconds": 0.5}
    # many jobs through both replicas: every event applied once, by one of them
    handles = await asyncio.gather(
        *(
            (first if i % 2 else second).post(
                "/v1/jobs", {"route": ["sleeper"], "arguments": {"seconds": 0}}
            )
            for i in range(40)
        )
    )
    jobs = await _all_ended(second, [h["job_id"] for _, h in handles])
    assert Counter(job["status"] for job in jobs) == {"succeeded": 40}
    await _quiet_events(cluster)
    engine = create_async_engine(cluster.manager.database_url)
    async with engine.connect() as connection:
        terminal = await connection.scalar(
            sa.text(
                "SELECT count(*) FROM job_events"
                " WHERE kind IN ('succeeded', 'failed', 'cancelled')"
            )
        )
    await engine.dispose()
    assert terminal == 41


async def test_a_job_whose_publish_was_never_confirmed_is_published_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.add_agent("node-1")
    await deploy(cluster, "doubler", "examples.pipeline:double")
    gateway = await gateway_for(cluster, None)
    # what a gateway leaves behind when it dies between writing a job and publishing it
    job_id = uuid.uuid4().hex
    engine = create_async_engine(cluster.manager.database_url)
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO jobs (id, route, arguments, status, created_at, updated_at,"
                " deadline_at) VALUES (:id, :route, :arguments, 'pending',"
                " now() - interval '5 seconds', now(), now() + interval '1 minute')"
            ),
            {"id": job_id, "route": json.dumps(["doubler"]), "arguments": json.dumps({"value": 4})},
        )
    await engine.dispose()
    [job] = await _all_ended(gateway, [job_id], timeout=20)
    assert (job["status"], job["result"]) == ("succeeded", {"value": 8})


async def test_tools_reload_on_sighup_and_a_bad_file_keeps_them(
    lone_gateway: RunningGateway,
) -> None:
    gateway = lone_gateway
    path = Path(gateway.env["BACKEND_TOOLS__PATH"])

    async def tool_names() -> list[str]:
        status, body = await gateway.get("/v1/tools")
        return [tool["name"] for tool in body["items"]]

    write_tools(path, [{"name": "fresh", "description": "a new tool", "route": ["doubler"]}])
    gateway.child.kill(signal.SIGHUP)
    await wait_until(lambda: _eq(tool_names(), ["fresh"]), what="the reloaded tools", timeout=10)
    path.write_text("tools: [{name: broken}]\n")
    gateway.child.kill(signal.SIGHUP)
    await wait_until(
        lambda: "tools not reloaded" in gateway.child.log(), what="the reload error", timeout=10
    )
    assert await tool_names() == ["fresh"]
    status, health = await gateway.get("/health")
    assert status == 200
    assert health["status"] == "ok" and health["checks"] == {"postgresql": "ok", "redis": "ok"}


async def _eq(names: Any, expected: list[str]) -> bool:
    return bool(await names == expected)


async def test_metrics_and_openapi(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.add_agent("node-1")
    await deploy(cluster, "doubler", "examples.pipeline:double")
    gateway = await gateway_for(cluster, write_tools(tmp_path / "tools.yaml"))
    status, job = await gateway.post("/v1/tools/double/call?wait=20", {"arguments": {"value": 1}})
    assert (status, job["result"]) == (200, {"value": 2})
    async with gateway.session.get(gateway.url + "/metrics") as response:
        text = await response.text()
    assert 'backendai_gateway_jobs{status="succeeded"} 1.0' in text
    assert "backendai_gateway_jobs_created_total 1.0" in text
    assert 'backendai_gateway_job_events_applied_total{kind="succeeded"} 1.0' in text
    status, document = await gateway.get("/openapi.json")
    assert status == 200 and document["openapi"] == "3.1.0"
    app = build_app(GatewayConfig(), ToolService(None))
    routes = {route.resource.canonical for route in app.router.routes() if route.resource}
    assert set(document["paths"]) == routes - {"/openapi.json"}
    assert "JobInfo" in document["components"]["schemas"]
