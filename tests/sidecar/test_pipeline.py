"""Envelopes through real pipelines: runtimes, sidecars and the crew as processes."""

from __future__ import annotations

from typing import Any

from ai.backend.common.dto.envelope import Envelope, Route
from ai.backend.testutils.assertions import without_times
from ai.backend.testutils.dataplane import DataPlane


async def test_two_hops_doubler_then_incrementer(plane: DataPlane) -> None:
    await plane.start_actor("doubler", "examples.pipeline:double")
    await plane.start_actor("incrementer", "examples.pipeline:increment")
    envelope = await plane.publish(["doubler", "incrementer"], {"value": 10}, job_id="job-1")
    terminal = await plane.wait_terminal("job-1")
    assert without_times([terminal]) == [
        {
            "job_id": "job-1",
            "actor": "happy-end",
            "kind": "succeeded",
            "result": {"value": 25},
            "data": {"branches": 1},
        }
    ]
    events = await plane.events("job-1")
    assert without_times(events[:2]) == [
        {
            "job_id": "job-1",
            "kind": "running",
            "actor": "doubler",
            "step": 1,
            "total": 2,
            "attempt": 1,
        },
        {
            "job_id": "job-1",
            "kind": "running",
            "actor": "incrementer",
            "step": 2,
            "total": 2,
            "attempt": 1,
        },
    ]
    assert {e["envelope_id"] for e in events} == {envelope.id}


async def test_headers_survive_three_hops_and_parameters_flow(plane: DataPlane) -> None:
    for name in ("hop-a", "hop-b", "hop-c"):
        await plane.start_actor(name, "examples.pipeline:record_headers")
    headers = {"trace_id": "t-42", "tenant": "ü-team"}
    await plane.publish(["hop-a", "hop-b", "hop-c"], {"seen": []}, job_id="h", headers=headers)
    terminal = await plane.wait_terminal("h")
    # each hop saw the previous hop's output (its list grew) and the same headers
    assert terminal["result"] == {"seen": [headers, headers, headers]}


async def test_envelope_without_job_id_is_its_own_job(plane: DataPlane) -> None:
    await plane.start_actor("doubler", "examples.pipeline:double")
    envelope = await plane.publish(["doubler"], {"value": 1})
    terminal = await plane.wait_terminal(envelope.id)
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"value": 2})


async def test_fan_out_completes_once_after_all_children(plane: DataPlane) -> None:
    await plane.start_actor("splitter", "examples.pipeline:fan_out")
    await plane.start_actor("doubler", "examples.pipeline:double", spec={"concurrency": 3})
    await plane.publish(["splitter", "doubler"], {"items": [1, 2, 3]}, job_id="fan")
    terminal = await plane.wait_terminal("fan")
    assert (terminal["kind"], terminal["result"], terminal["data"]) == (
        "succeeded",
        {"results": [{"value": 2}, {"value": 4}, {"value": 6}]},
        {"branches": 3},
    )
    await plane.wait_quiescent()
    assert len(await plane.terminal_events("fan")) == 1
    running = [e for e in await plane.events("fan") if e["actor"] == "doubler"]
    assert len({e["envelope_id"] for e in running}) == 3
    # the job's branch state is gone once it ended; its end guard remains, for an hour
    assert await plane.redis.exists(plane.keys.job_state("fan")) == 0
    assert await plane.redis.get(plane.keys.job_end("fan")) == b"succeeded"
    assert 3500 < await plane.redis.ttl(plane.keys.job_end("fan")) <= 3600


async def test_empty_result_ends_the_route_with_the_payload_unchanged(plane: DataPlane) -> None:
    await plane.start_actor("stopper", "examples.pipeline:finish")
    await plane.start_actor("doubler", "examples.pipeline:double")
    await plane.publish(["stopper", "doubler"], {"value": 7}, job_id="stop")
    terminal = await plane.wait_terminal("stop")
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"value": 7})
    assert [e["actor"] for e in await plane.events("stop") if e["kind"] == "running"] == ["stopper"]


async def test_payloads_are_preserved_exactly(plane: DataPlane) -> None:
    await plane.start_actor("echo", "examples.pipeline:echo")
    nested: Any = None
    for depth in range(20):
        nested = {"level": depth, "child": nested, "list": [None, True, 1.5, -0]}
    payloads = {
        "unicode": {"text": 'héllo ✓ 世界 🚀 \u0000 "quoted" \\ back'},
        "nested": nested,
        "nulls": {"a": None, "b": [None, None], "c": {}},
        "big": {"blob": "x" * (10 * 1024 * 1024)},
    }
    for name, payload in payloads.items():
        await plane.publish(["echo"], payload, job_id=f"exact-{name}")
    for name, payload in payloads.items():
        terminal = await plane.wait_terminal(f"exact-{name}", timeout=30)
        assert terminal["kind"] == "succeeded", name
        assert terminal["result"] == payload, name


async def test_terminal_status_once_when_delivered_twice(plane: DataPlane) -> None:
    envelope = Envelope(
        route=Route(actors=["doubler", "happy-end"], current=1),
        payload={"value": 2},
        job_id="twice",
    )
    # the same envelope reaches happy-end twice (a redelivery after a crash)
    await plane.publish_envelope(envelope)
    await plane.publish_envelope(envelope)
    terminal = await plane.wait_terminal("twice")
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"value": 2})
    await plane.wait_for(
        lambda: _crew_idle(plane), what="happy-end to take both deliveries", timeout=10
    )
    assert len(await plane.terminal_events("twice")) == 1


async def _crew_idle(plane: DataPlane) -> bool:
    groups: Any = await plane.redis.xinfo_groups(plane.keys.actor_stream("happy-end"))
    return [(g["pending"], g["lag"]) for g in groups] == [(0, 0)]
