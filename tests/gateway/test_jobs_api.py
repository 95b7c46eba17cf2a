"""The jobs REST API against real processes: a manager and an agent running real actors, and
gateway processes on the same database and Redis prefix. The tests share one such stack, except
the one that restarts its gateway."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import examples.failures  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import examples.pipeline  # noqa: F401
import examples.streaming  # noqa: F401
import pytest

from ai.backend.testutils.control_plane import Cluster
from ai.backend.testutils.gateway import (
    PIPELINE_ACTORS,
    RunningGateway,
    SharedStack,
    deploy,
    gateway_for,
    gateway_on_actors,
    shared_stack,
)
from ai.backend.testutils.waiting import wait_until

TERMINAL = {"succeeded", "failed", "cancelled"}


async def _on_pipeline(cluster: Cluster) -> RunningGateway:
    return await gateway_on_actors(cluster, PIPELINE_ACTORS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack[RunningGateway]]:
    """One stack for the tests whose gateway keeps running and whose jobs all succeed or are
    cancelled (a test lists the failed jobs and expects none)."""
    with shared_stack(tmp_path_factory.mktemp("stack"), _on_pipeline) as stack:
        yield stack


def _check_history(events: list[Any], result: Any) -> None:
    """Ids 1..n without gaps, one terminal event, last, carrying ``result``."""
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.event for e in events if e.event in TERMINAL] == ["succeeded"]
    assert events[-1].event == "succeeded"
    assert events[-1].data["result"] == result
    assert {e.event for e in events[:-1]} <= {"running", "progress", "partial"}


async def test_a_tool_call_from_handle_to_result_and_history(gateway: RunningGateway) -> None:
    status, tools = await gateway.get("/v1/tools")
    assert status == 200
    assert [t["name"] for t in tools["items"]] == ["double", "double_then_increment"]
    assert tools["items"][1]["input_schema"] == {
        "type": "object",
        "properties": {"value": {"type": "integer", "description": "the input"}},
        "required": ["value"],
        "additionalProperties": False,
    }

    status, handle = await gateway.post(
        "/v1/tools/double_then_increment/call", {"arguments": {"value": 10}}
    )
    assert status == 202
    job_id = handle["job_id"]
    assert handle == {
        "job_id": job_id,
        "status": "pending",
        "status_url": f"{gateway.url}/v1/jobs/{job_id}",
        "stream_url": f"{gateway.url}/v1/jobs/{job_id}/events",
    }
    live = asyncio.create_task(gateway.sse(job_id))  # opened while the job runs
    status, job = await gateway.post("/v1/tools/double/call?wait=20", {"arguments": {}})
    assert (status, job["status"], job["result"], job["arguments"]) == (
        200,
        "succeeded",
        {"value": 42},
        {"value": 21},
    )
    assert job["last_seq"] == 2  # running, succeeded: what a waited-for call answers

    async def ended() -> dict[str, Any] | None:
        status, body = await gateway.get(f"/v1/jobs/{job_id}")
        return body if body["status"] in TERMINAL else None

    job = await wait_until(ended, what="the tool's job to end", timeout=30)
    assert (job["status"], job["result"], job["progress"], job["error"]) == (
        "succeeded",
        {"value": 25},
        1.0,
        None,
    )
    assert job["route"] == ["doubler", "incrementer"] and job["tool"] == "double_then_increment"
    during = await live
    after, again = await asyncio.gather(gateway.sse(job_id), gateway.sse(job_id))  # two clients
    _check_history(after, {"value": 25})
    assert during == after == again
    assert job["last_seq"] == after[-1].id  # the job says how far its history goes
    resumed = await gateway.sse(job_id, last_event_id=1)
    assert resumed == after[1:]
    assert await gateway.sse(job_id, last_event_id=after[-1].id) == []

    # newest first, in pages; other tests' jobs are older than this test's two
    status, every = await gateway.get("/v1/jobs?limit=500")
    assert status == 200 and every["next_cursor"] is None
    status, page = await gateway.get("/v1/jobs?limit=1")
    assert status == 200 and len(page["items"]) == 1 and page["next_cursor"]
    status, rest = await gateway.get(f"/v1/jobs?limit=500&cursor={page['next_cursor']}")
    assert [j["id"] for j in page["items"] + rest["items"]] == [j["id"] for j in every["items"]]
    assert [j["id"] for j in page["items"] + rest["items"]][1] == job_id
    assert rest["next_cursor"] is None
    status, succeeded = await gateway.get("/v1/jobs?status=succeeded")
    assert {j["id"] for j in succeeded["items"]} >= {job_id}
    status, failed = await gateway.get("/v1/jobs?status=failed")
    assert failed == {"items": [], "next_cursor": None}


async def test_fifty_concurrent_calls_get_their_own_results(gateway: RunningGateway) -> None:
    async def call(value: int) -> Any:
        status, job = await gateway.post(
            "/v1/jobs?wait=30", {"route": ["doubler", "incrementer"], "arguments": {"value": value}}
        )
        assert status == 200, job
        return job["result"]

    results = await asyncio.gather(*(call(i) for i in range(50)))
    assert results == [{"value": 2 * i + 5} for i in range(50)]


async def test_bad_requests_get_exact_errors(lone_gateway: RunningGateway) -> None:
    # a gateway of its own, on a database of its own: a refused request creates no job
    gateway = lone_gateway
    cases: list[tuple[str, str, Any, int, dict[str, str]]] = [
        (
            "POST",
            "/v1/tools/nope/call",
            {"arguments": {}},
            404,
            {"error": "unknown tool 'nope'", "code": "not_found"},
        ),
        (
            "POST",
            "/v1/tools/double_then_increment/call",
            {"arguments": {"value": "x"}},
            400,
            {"error": "arguments.value: 'x' is not of type 'integer'", "code": "invalid_argument"},
        ),
        (
            "POST",
            "/v1/jobs",
            {"tool": "double", "route": ["doubler"]},
            400,
            {"error": "(root): give exactly one of tool and route", "code": "invalid_argument"},
        ),
        (
            "POST",
            "/v1/jobs",
            {"route": ["happy-end"]},
            400,
            {
                "error": "route[0]: actor name 'happy-end' is reserved for the platform's"
                " crew actors",
                "code": "invalid_argument",
            },
        ),
        (
            "GET",
            "/v1/jobs?status=done",
            None,
            400,
            {
                "error": "status: expected one of pending, running, succeeded, failed, cancelled",
                "code": "invalid_argument",
            },
        ),
        (
            "GET",
            "/v1/jobs?limit=0",
            None,
            400,
            {"error": "limit: must be between 1 and 500", "code": "invalid_argument"},
        ),
        (
            "GET",
            "/v1/jobs?cursor=zzz",
            None,
            400,
            {"error": "cursor: not a cursor this API returned", "code": "invalid_argument"},
        ),
        ("GET", "/v1/jobs/nope", None, 404, {"error": "no job 'nope'", "code": "not_found"}),
        (
            "POST",
            "/v1/jobs",
            {"route": ["doubler"], "timeout": "2d"},
            400,
            {
                "error": "(root): timeout: must be above 0 and at most 23 hours",
                "code": "invalid_argument",
            },
        ),
        ("GET", "/v1/jobs/nope/events", None, 404, {"error": "no job 'nope'", "code": "not_found"}),
        (
            "POST",
            "/v1/jobs/nope/cancel",
            None,
            404,
            {"error": "no job 'nope'", "code": "not_found"},
        ),
        (
            "POST",
            "/v1/jobs?wait=-1",
            {"route": ["doubler"]},
            400,
            {"error": "wait: must be between 0 and 300 seconds", "code": "invalid_argument"},
        ),
    ]
    for method, path, body, status, error in cases:
        got = await gateway.request(method, path, body)
        assert got == (status, error), (method, path)
    assert await gateway.get("/v1/jobs") == (200, {"items": [], "next_cursor": None})
    async with gateway.session.post(
        gateway.url + "/v1/jobs", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["code"] == "invalid_input"


async def test_cancel_skips_the_jobs_envelopes_and_ends_the_stream(
    gateway: RunningGateway, shared_cluster: Cluster
) -> None:
    await deploy(shared_cluster, "sleeper", "examples.failures:slow", concurrency=1)
    # the first job occupies the only slot; the second waits in the stream and is cancelled
    status, first = await gateway.post(
        "/v1/jobs", {"route": ["sleeper"], "arguments": {"seconds": 1.5}}
    )
    status, second = await gateway.post(
        "/v1/jobs", {"route": ["sleeper"], "arguments": {"seconds": 0}, "timeout": "120s"}
    )
    status, cancelled = await gateway.post(f"/v1/jobs/{second['job_id']}/cancel")
    assert (status, cancelled["status"], cancelled["error"]) == (
        200,
        "cancelled",
        {"code": "cancelled", "message": "cancelled by the caller"},
    )
    assert await gateway.post(f"/v1/jobs/{second['job_id']}/cancel") == (
        409,
        {"error": f"job {second['job_id']} has already ended as cancelled", "code": "conflict"},
    )

    # sidecars skip its envelopes until its deadline and a minute more, not for a day
    seconds, _ = await shared_cluster.plane.redis.time()
    forget_at = await shared_cluster.plane.redis.zscore(
        shared_cluster.plane.keys.cancel, second["job_id"]
    )
    deadline = datetime.fromisoformat(cancelled["deadline_at"]).timestamp()
    assert forget_at is not None and abs(forget_at - (deadline + 60)) < 3
    events = await gateway.sse(second["job_id"])
    assert [e.event for e in events][-1] == "cancelled"
    assert events[-1].data["data"] == {"reason": "cancelled by the caller"}
    status, done = await gateway.post(f"/v1/jobs/{first['job_id']}/cancel?wait=1")
    assert status in (200, 409)
    await shared_cluster.plane.wait_quiescent(timeout=30)
    status, job = await gateway.get(f"/v1/jobs/{second['job_id']}")
    assert job["status"] == "cancelled"  # the skipped envelope did not end it again
    assert [e.event for e in await gateway.sse(second["job_id"])].count("cancelled") == 1


async def test_deadlines_are_enforced_also_after_a_restart(cluster: Cluster) -> None:
    """On a stack of its own: no other gateway may run while the deadline passes."""
    await cluster.add_agent("node-1")
    await deploy(cluster, "sleeper", "examples.failures:slow", concurrency=2)
    gateway = await gateway_for(cluster, None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, slow = await gateway.post(
        "/v1/jobs?wait=10", {"route": ["sleeper"], "arguments": {"seconds": 5}, "timeout": "1s"}
    )
    assert status == 200 and loop.time() - started < 1 + 2
    assert slow["status"] == "failed" and slow["error"]["code"] == "timeout"

    # nobody serves "ghost": only the gateway's own deadline can end this job, after a restart
    status, ghost = await gateway.post("/v1/jobs", {"route": ["ghost"], "timeout": "2s"})
    status, job = await gateway.get(f"/v1/jobs/{ghost['job_id']}")
    deadline = datetime.fromisoformat(job["deadline_at"])
    gateway.child.kill(signal.SIGKILL)
    gateway.child.wait(10)
    # the deadline passes while no gateway runs
    await wait_until(lambda: datetime.now(UTC) > deadline, what="the deadline", timeout=10)
    restarted = await gateway_for(cluster, None, name="gateway-again")

    async def failed() -> dict[str, Any] | None:
        status, body = await restarted.get(f"/v1/jobs/{ghost['job_id']}")
        return body if body["status"] == "failed" else None

    ended = await wait_until(failed, what="the ghost job to fail by its deadline", timeout=10)
    assert ended["error"]["code"] == "timeout"
