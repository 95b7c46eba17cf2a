"""Long tool calls over MCP against real actors: a 15-hop chain streams its progress to both SDK
generations, a call that outlasts the tool's wait answers with a job handle that ``get_job`` and
``cancel_job`` work on, and each era's cancellation cancels the job (legacy
``notifications/cancelled``, modern: the client going away), but a gateway that stops answers
its waiting calls with their job handles and cancels nothing."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import examples.pipeline  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import pytest

from ai.backend.testutils.control_plane import Cluster
from ai.backend.testutils.dataplane import DataPlane
from ai.backend.testutils.gateway import (
    RunningGateway,
    SharedStack,
    deploy,
    gateway_for,
    gateway_on_actors,
    shared_stack,
    write_tools,
)
from ai.backend.testutils.mcp import (
    MCP1_CLIENT,
    MCP2_CLIENT,
    MODERN_META,
    MODERN_VERSION,
    RawMcp,
    run_client,
)
from ai.backend.testutils.waiting import wait_until

HOPS = 15
LONG_HOPS = 40
VALUE = {"value": {"type": "integer"}}
TOOLS: list[dict[str, Any]] = [
    {
        "name": "chain",
        "description": "Doubles a number fifteen times.",
        "parameters": VALUE,
        "required": ["value"],
        "route": ["doubler"] * HOPS,
        "progress": True,
        "timeout": "60s",
        "wait": "50s",
    },
    {
        # 15 hops of 200 ms: still running when the clients below give up after 1 s
        "name": "slow_chain",
        "description": "Doubles a number fifteen times, slowly.",
        "parameters": VALUE,
        "required": ["value"],
        "route": ["slow-doubler"] * HOPS,
        "progress": True,
        "timeout": "60s",
        "wait": "50s",
    },
    {
        # 40 hops of 200 ms: still running well after its calls have begun to wait
        "name": "long_chain",
        "description": "Doubles a number forty times, slowly.",
        "parameters": VALUE,
        "required": ["value"],
        "route": ["slow-doubler"] * LONG_HOPS,
        "progress": True,
        "timeout": "60s",
        "wait": "50s",
    },
    {
        "name": "slow_chain_handle",
        "description": "slow_chain that answers with its job handle after a second.",
        "parameters": VALUE,
        "required": ["value"],
        "route": ["slow-doubler"] * HOPS,
        "timeout": "60s",
        "wait": "1s",
    },
]
SLOW_CALL: dict[str, Any] = {"op": "call", "tool": "slow_chain", "arguments": {"value": 1}}


async def _tools_on_actors(cluster: Cluster) -> RunningGateway:
    """A gateway with :data:`TOOLS`, on ``doubler`` and ``slow-doubler`` replicas."""
    actors = {
        "doubler": "examples.pipeline:double",
        "slow-doubler": "examples.pipeline:double_slowly",
    }
    return await gateway_on_actors(cluster, actors, TOOLS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack[RunningGateway]]:
    """One stack for the tests that only call tools: each counts only the jobs it started."""
    with shared_stack(tmp_path_factory.mktemp("stack"), _tools_on_actors) as stack:
        yield stack


@pytest.fixture
async def mcp(gateway: RunningGateway) -> AsyncIterator[RawMcp]:
    async with aiohttp.ClientSession() as session:
        yield RawMcp(session, f"{gateway.url}/mcp")


async def _jobs_of(gateway: RunningGateway, tool: str) -> list[dict[str, Any]]:
    status, page = await gateway.get("/v1/jobs?limit=500")
    assert status == 200 and page["next_cursor"] is None, page
    return [job for job in page["items"] if job["tool"] == tool]


async def _job_ids_of(gateway: RunningGateway, tool: str) -> set[str]:
    return {job["id"] for job in await _jobs_of(gateway, tool)}


async def _all_cancelled(
    gateway: RunningGateway, plane: DataPlane, tool: str, count: int, *, earlier: set[str]
) -> None:
    """Exactly ``count`` jobs of ``tool`` besides the ``earlier`` ones, all cancelled, and still
    so once the data plane is quiet (no duplicate on its way to be counted by the next test)."""

    async def cancelled() -> bool:
        jobs = [job for job in await _jobs_of(gateway, tool) if job["id"] not in earlier]
        return len(jobs) == count and all(job["status"] == "cancelled" for job in jobs)

    await wait_until(cancelled, what=f"{count} {tool} job(s) cancelled", timeout=30)


def _check_chain(outcome: dict[str, Any]) -> None:
    assert outcome["result"]["structuredContent"] == {"value": 2**HOPS}
    values = [value for value, _, _ in outcome["progress"]]
    assert len(values) >= HOPS
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[-1] == HOPS
    assert {total for _, total, _ in outcome["progress"]} == {HOPS}


async def test_a_15_hop_chain_streams_increasing_progress_to_both_sdk_generations(
    gateway: RunningGateway,
) -> None:
    call = {"op": "call", "tool": "chain", "arguments": {"value": 1}, "progress": True}
    url = f"{gateway.url}/mcp"
    _check_chain((await run_client(MCP1_CLIENT, url, [call])).results[0])
    _check_chain((await run_client(MCP2_CLIENT, url, [call], mode="auto")).results[0])


async def test_a_legacy_cancel_notification_cancels_the_job(
    gateway: RunningGateway, shared_cluster: Cluster
) -> None:
    earlier = await _job_ids_of(gateway, "slow_chain")
    operations = [{**SLOW_CALL, "progress": True, "cancel": True}, {"op": "ping"}]
    report = await run_client(MCP1_CLIENT, f"{gateway.url}/mcp", operations)
    cancelled_call, ping = report.results
    assert cancelled_call["result"]["isError"] is True
    assert "cancelled" in cancelled_call["result"]["content"][0]["text"]
    assert ping == {"result": {}}
    await _all_cancelled(gateway, shared_cluster.plane, "slow_chain", 1, earlier=earlier)


async def test_the_mcp2_legacy_client_cancels_the_job_when_its_call_times_out(
    gateway: RunningGateway,
    shared_cluster: Cluster,
) -> None:
    earlier = await _job_ids_of(gateway, "slow_chain")
    operations = [{**SLOW_CALL, "progress": True, "timeout": 1.0}, {"op": "ping"}]
    report = await run_client(MCP2_CLIENT, f"{gateway.url}/mcp", operations, mode="legacy")
    timed_out, ping = report.results
    assert timed_out["error"]["code"] == -32001  # the SDK's own timeout
    assert ping == {"result": {}}
    await _all_cancelled(gateway, shared_cluster.plane, "slow_chain", 1, earlier=earlier)


async def test_a_modern_client_that_goes_away_cancels_the_job(
    gateway: RunningGateway, shared_cluster: Cluster
) -> None:
    earlier = await _job_ids_of(gateway, "slow_chain")
    operations = [
        {**SLOW_CALL, "progress": True, "timeout": 1.0},  # answered with SSE
        {**SLOW_CALL, "timeout": 1.0},  # answered with JSON
    ]
    report = await run_client(MCP2_CLIENT, f"{gateway.url}/mcp", operations, mode="2026-07-28")
    assert [outcome["error"]["code"] for outcome in report.results] == [-32001, -32001]
    await _all_cancelled(gateway, shared_cluster.plane, "slow_chain", 2, earlier=earlier)


async def test_a_call_past_its_wait_answers_a_handle_for_get_job_and_cancel_job(
    mcp: RawMcp, gateway: RunningGateway
) -> None:
    reply = await mcp.modern("tools/call", {"name": "slow_chain_handle", "arguments": {"value": 1}})
    assert reply.status == 200
    handle = reply.body["result"]["structuredContent"]
    job_id = handle["job_id"]
    assert handle["status"] in ("pending", "running")
    assert handle == {
        "job_id": job_id,
        "status": handle["status"],
        "status_url": f"{gateway.url}/v1/jobs/{job_id}",
        "stream_url": f"{gateway.url}/v1/jobs/{job_id}/events",
    }
    assert reply.body["result"]["isError"] is False

    read = await mcp.modern("tools/call", {"name": "get_job", "arguments": {"job_id": job_id}})
    job = read.body["result"]["structuredContent"]
    assert (job["id"], job["status"], job["tool"]) == (job_id, "running", "slow_chain_handle")

    cancel = {"name": "cancel_job", "arguments": {"job_id": job_id}}
    cancelled = (await mcp.modern("tools/call", cancel)).body["result"]
    assert (cancelled["isError"], cancelled["structuredContent"]["status"]) == (False, "cancelled")
    again = (await mcp.modern("tools/call", cancel)).body["result"]
    assert again["isError"] is True
    assert again["content"][0]["text"] == f"job {job_id} has already ended as cancelled"

    unknown = {"name": "get_job", "arguments": {"job_id": "no-such-job"}}
    assert (await mcp.modern("tools/call", unknown)).body["result"]["isError"] is True
    missing = (await mcp.modern("tools/call", {"name": "get_job", "arguments": {}})).body
    assert "job_id" in missing["result"]["content"][0]["text"]


async def _streamed_call(mcp: RawMcp, tool: str, request_id: int) -> list[dict[str, Any]]:
    """The messages of a modern ``tools/call`` answered with SSE (progress asked for)."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": {"value": 1},
            "_meta": {**MODERN_META, "progressToken": request_id},
        },
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN_VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
    }
    async with mcp.session.post(mcp.url, data=json.dumps(body), headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        text = await response.text()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


async def test_a_stopping_gateway_answers_waiting_calls_with_handles_and_cancels_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    # a stack of its own, whose first gateway (the job-event applier) is the one stopped: on the
    # module's stack a stopped replica that does not apply events sometimes answered a waiting
    # call only when its job had ended
    await cluster.add_agent("node-1")
    await deploy(cluster, "slow-doubler", "examples.pipeline:double_slowly", concurrency=8)
    tools = write_tools(tmp_path / "tools.yaml", TOOLS)
    stopping = await gateway_for(cluster, tools)
    other = await gateway_for(cluster, tools, name="gateway-2", gateway_id="gw-test-2")
    mcp = RawMcp(cluster.manager.session, f"{stopping.url}/mcp")
    streamed = asyncio.create_task(_streamed_call(mcp, "long_chain", 1))
    answered = asyncio.create_task(
        mcp.modern("tools/call", {"name": "long_chain", "arguments": {"value": 1}}, request_id=2)
    )

    async def both_running() -> bool:
        jobs = await _jobs_of(other, "long_chain")
        return len(jobs) == 2 and all(job["status"] == "running" for job in jobs)

    await wait_until(both_running, what="both calls' jobs to run", timeout=30)
    stopping.child.kill(signal.SIGTERM)  # both calls are waiting for their jobs
    messages = await streamed
    reply = await answered
    await wait_until(lambda: not stopping.child.alive(), what="the gateway to exit", timeout=15)
    assert stopping.child.wait(0) == 0
    # each call ends with its job's handle (the stream after its progress)
    assert messages[-1]["id"] == 1
    assert {m["method"] for m in messages[:-1]} <= {"notifications/progress"}
    handles = {}
    for request_id, result in ((1, messages[-1]["result"]), (2, reply.body["result"])):
        assert result["isError"] is False, result
        handle = result["structuredContent"]
        assert handle["status"] == "running", result
        handles[handle["job_id"]] = request_id
    assert len(handles) == 2
    # the jobs go on to succeed: the gateway's shutdown cancelled neither
    done: list[dict[str, Any]] = []

    async def both_ended() -> bool:
        jobs = await _jobs_of(other, "long_chain")
        done[:] = [job for job in jobs if job["status"] in ("succeeded", "failed", "cancelled")]
        return len(done) == 2

    await wait_until(both_ended, what="both jobs to end", timeout=40)
    assert {job["id"]: job["status"] for job in done} == dict.fromkeys(handles, "succeeded")
    assert all(job["result"] == {"value": 2**LONG_HOPS} for job in done)
