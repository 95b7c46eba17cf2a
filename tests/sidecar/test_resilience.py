"""Processes that die, restart, stop, or misbehave; events on the side; metrics."""

from __future__ import annotations

import asyncio
import signal
import struct
import urllib.request
from pathlib import Path

import examples.streaming  # noqa: F401  (handlers the children load)
import pytest

from ai.backend.common.framing import encode_frame, read_frame
from ai.backend.testutils.assertions import without_times
from ai.backend.testutils.dataplane import DataPlane
from ai.backend.testutils.services import free_port


async def running_count(plane: DataPlane, job_id: str | None = None) -> int:
    return len([e for e in await plane.events(job_id) if e["kind"] == "running"])


@pytest.mark.separate_runtime
async def test_runtime_killed_mid_call_is_retried_after_restart(plane: DataPlane) -> None:
    runtime, _sidecar = await plane.start_actor("sleepy", "examples.failures:slow")
    await plane.publish(["sleepy"], {"seconds": 2}, job_id="kill-rt")
    await plane.wait_for(lambda: _has_running(plane, "kill-rt"), what="the call to start")
    assert runtime is not None  # the default mode's runtime process
    runtime.kill(signal.SIGKILL)
    runtime.wait(10)
    plane.start_runtime("sleepy", "examples.failures:slow")  # the supervisor's restart
    terminal = await plane.wait_terminal("kill-rt", timeout=30)
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"seconds": 2})
    attempts = [e["attempt"] for e in await plane.events("kill-rt") if e["kind"] == "running"]
    assert attempts == [1, 2]
    await plane.wait_quiescent()
    assert len(await plane.terminal_events("kill-rt")) == 1


async def _has_running(plane: DataPlane, job_id: str) -> bool:
    return await running_count(plane, job_id) > 0


async def test_sidecar_killed_mid_batch_is_reclaimed(plane: DataPlane) -> None:
    plane.start_runtime_unless_inprocess("batch", "examples.failures:slow", "--concurrency", "8")
    spec = {"name": "batch", "handler": "examples.failures:slow", "concurrency": 4}
    first = await plane.start_sidecar("batch", spec=spec, sidecar={"claim_idle": "1s"})
    for i in range(8):
        await plane.publish(["batch"], {"seconds": 1, "i": i}, job_id=f"b{i}")
    await plane.wait_for(
        lambda: _running_at_least(plane, 4), what="the first sidecar's batch", timeout=10
    )
    first.kill(signal.SIGKILL)
    first.wait(10)
    await plane.start_sidecar("batch", spec=spec, sidecar={"claim_idle": "1s"})
    for i in range(8):
        terminal = await plane.wait_terminal(f"b{i}", timeout=30)
        assert (terminal["kind"], terminal["result"]) == ("succeeded", {"seconds": 1, "i": i})
    await plane.wait_quiescent()
    for i in range(8):
        assert len(await plane.terminal_events(f"b{i}")) == 1
    depth = await plane.redis.xinfo_groups(plane.keys.actor_stream("batch"))
    assert [(g["pending"], g["lag"]) for g in depth] == [(0, 0)]


async def _running_at_least(plane: DataPlane, count: int) -> bool:
    return await running_count(plane) >= count


async def test_sigterm_finishes_in_flight_work_and_exits_zero(plane: DataPlane) -> None:
    _runtime, sidecar = await plane.start_actor("sleepy", "examples.failures:slow")
    await plane.publish(["sleepy"], {"seconds": 1}, job_id="term")
    await plane.wait_for(lambda: _has_running(plane, "term"), what="the call to start")
    sidecar.kill(signal.SIGTERM)
    assert sidecar.wait(15) == 0
    terminal = await plane.wait_terminal("term")
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"seconds": 1})


async def test_a_draining_sidecar_keeps_its_entries_from_other_replicas(
    plane: DataPlane,
) -> None:
    plane.start_runtime_unless_inprocess("sleepy", "examples.failures:slow", "--concurrency", "4")
    spec = {"name": "sleepy", "handler": "examples.failures:slow", "concurrency": 1}
    fast_reclaim = {"claim_idle": "1s"}
    draining = await plane.start_sidecar("sleepy", spec=spec, sidecar=fast_reclaim)
    await plane.publish(["sleepy"], {"seconds": 3}, job_id="drain")
    await plane.wait_for(lambda: _has_running(plane, "drain"), what="the call to start")
    await plane.start_sidecar("sleepy", spec=spec, sidecar=fast_reclaim)  # would reclaim
    draining.kill(signal.SIGTERM)
    assert draining.wait(15) == 0
    terminal = await plane.wait_terminal("drain")
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"seconds": 3})
    await plane.wait_quiescent()
    # the 3 s call outlived claim_idle, yet was neither reclaimed nor run again
    assert await running_count(plane, "drain") == 1


async def test_partial_and_progress_events(plane: DataPlane) -> None:
    await plane.start_actor("writer", "examples.streaming:tokens")
    await plane.start_actor("worker", "examples.streaming:with_progress")
    await plane.publish(["writer"], {"text": "one two"}, job_id="tok")
    await plane.publish(["worker"], {"steps": 2}, job_id="prog", headers={"trace_id": "t"})
    assert (await plane.wait_terminal("tok"))["result"] == {"text": "one two", "tokens": 2}
    events = await plane.events("tok")
    partials = [e["data"] for e in events if e["kind"] == "partial"]
    assert partials == [{"token": "one"}, {"token": "two"}]
    assert events[-1]["kind"] == "succeeded"  # the partials were written before the job ended
    assert (await plane.wait_terminal("prog"))["result"] == {
        "steps": 2,
        "job_id": "prog",
        "trace": "t",
    }
    progress = [
        (e["data"], e["step"], e["total"])
        for e in await plane.events("prog")
        if e["kind"] == "progress"
    ]
    assert progress == [
        ({"progress": 1, "total": 2, "message": "step 1"}, 1, 1),
        ({"progress": 2, "total": 2, "message": "step 2"}, 1, 1),
    ]


async def test_progress_of_an_async_handler_that_answers_at_once_comes_first(
    plane: DataPlane,
) -> None:
    await plane.start_actor("prompt", "examples.streaming:progress_then_answer")
    await plane.publish(["prompt"], {"value": 1}, job_id="prompt")
    assert (await plane.wait_terminal("prompt"))["result"] == {"value": 1}
    kinds = [(e["kind"], e.get("data")) for e in await plane.events("prompt")]
    assert kinds == [
        ("running", None),
        ("progress", {"progress": 1, "total": 1, "message": "done"}),
        ("succeeded", {"branches": 1}),
    ]


async def test_cancelled_job_is_skipped_and_ends_once_as_cancelled(plane: DataPlane) -> None:
    assert (await plane.cancel("gone", "user asked")).ended
    await plane.start_actor("doubler", "examples.pipeline:double")
    assert (await plane.cancel("gone-later")).ended  # told through the channel
    await plane.publish(["doubler"], {"value": 1}, job_id="gone")
    await plane.publish(["doubler"], {"value": 1}, job_id="gone-later")
    await plane.publish(["doubler"], {"value": 1}, job_id="kept")
    assert (await plane.wait_terminal("kept"))["result"] == {"value": 2}
    await plane.wait_quiescent()
    [event] = without_times(await plane.events("gone"))
    assert event == {"job_id": "gone", "kind": "cancelled", "data": {"reason": "user asked"}}
    assert [e["kind"] for e in await plane.events("gone-later")] == ["cancelled"]


@pytest.mark.separate_runtime
async def test_invalid_json_from_the_runtime(plane: DataPlane, tmp_path: Path) -> None:
    socket_path = tmp_path / "liar.sock"

    async def lying_runtime(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            encode_frame({"type": "hello", "protocol": 1, "handler": "x:y", "concurrency": 1})
        )
        while (frame := await read_frame(reader)) is not None:
            body = b'{"type": "result", "id": "' + frame["id"].encode() + b'", "status": ok'
            writer.write(struct.pack(">I", len(body)) + body)
            await writer.drain()

    server = await asyncio.start_unix_server(lying_runtime, path=str(socket_path))
    async with server:
        plane.sockets["liar"] = socket_path
        spec = {"name": "liar", "handler": "x:y", "retry": {"max_attempts": 3}}
        await plane.start_sidecar("liar", spec=spec)
        await plane.publish(["liar"], {"value": 1}, job_id="lie")
        terminal = await plane.wait_terminal("lie")
    assert terminal["kind"] == "failed"
    assert terminal["error"]["code"] == "invalid_json"
    assert terminal["error"]["attempt"] == 1  # never retried
    assert terminal["error"]["message"].startswith("the runtime sent an invalid frame")


async def test_metrics_endpoint(plane: DataPlane) -> None:
    port = free_port()
    await plane.start_actor("doubler", "examples.pipeline:double", sidecar={"metrics_port": port})
    await plane.publish(["doubler"], {"value": 1}, job_id="m1")
    await plane.publish(["doubler"], {"value": None}, job_id="m2")  # TypeError in the handler
    await plane.wait_terminal("m1")
    await plane.wait_terminal("m2")
    text = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        .read()
        .decode()
    )
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("bai_sidecar_") and "_created" not in line
    }
    assert samples['bai_sidecar_received_total{actor="doubler"}'] == 2
    assert samples['bai_sidecar_processed_total{actor="doubler"}'] == 1
    assert samples['bai_sidecar_failed_total{actor="doubler"}'] == 1
    assert samples['bai_sidecar_retried_total{actor="doubler"}'] == 0
    assert samples['bai_sidecar_dead_lettered_total{actor="doubler"}'] == 0
    assert samples['bai_sidecar_in_flight{actor="doubler"}'] == 0
    assert samples['bai_sidecar_processing_seconds_count{actor="doubler"}'] == 2
