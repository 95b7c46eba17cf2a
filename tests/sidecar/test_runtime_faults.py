"""A runtime that goes away, says a malformed hello, or answers with an oversized frame never
stops the sidecar, and never turns a backlog into failed jobs."""

from __future__ import annotations

import asyncio
import signal
import struct
import time
from pathlib import Path

import pytest

from ai.backend.common.framing import encode_frame, read_frame
from ai.backend.testutils.dataplane import DataPlane
from ai.backend.testutils.runtime import FAKE_HELLO, FakeRuntime, misbehaving_once

ECHO = {"name": "echo", "handler": "fake:runtime", "timeout": "20s", "concurrency": 2}


@pytest.mark.separate_runtime
async def test_a_malformed_hello_is_reported_and_the_sidecar_connects_again(
    plane: DataPlane, tmp_path: Path
) -> None:
    async def bad_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(encode_frame({**FAKE_HELLO, "concurrency": "many"}))
        await reader.read()  # until the sidecar hangs up

    async with FakeRuntime(tmp_path / "echo.sock", misbehaving_once(bad_hello)) as runtime:
        plane.sockets["echo"] = runtime.socket_path
        sidecar = await plane.start_sidecar("echo", spec=ECHO)
        await plane.publish(["echo"], {"n": 1}, job_id="after-hello")
        assert (await plane.wait_terminal("after-hello"))["result"] == {"n": 1}
    assert runtime.connections == 2
    assert "the runtime's hello is not valid (hello.concurrency must be a positive integer:" in (
        sidecar.log()
    )


@pytest.mark.separate_runtime
async def test_an_oversized_answer_fails_its_call_at_once_and_the_connection_is_remade(
    plane: DataPlane, tmp_path: Path
) -> None:
    async def huge_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(encode_frame(FAKE_HELLO))
        frame = await read_frame(reader)
        assert frame is not None
        # announce 4 GiB, send the start of the body, then stall
        head = b'{"type":"result","id":"' + frame["id"].encode() + b'","status":"ok","result":"'
        writer.write(struct.pack(">I", 2**32 - 1) + head + b"x" * 200)
        await reader.read()

    async with FakeRuntime(tmp_path / "echo.sock", misbehaving_once(huge_answer)) as runtime:
        plane.sockets["echo"] = runtime.socket_path
        await plane.start_sidecar("echo", spec=ECHO, sidecar={"max_frame": "1k"})
        started = time.monotonic()
        await plane.publish(["echo"], {"n": 1}, job_id="huge")
        terminal = await plane.wait_terminal("huge")
        elapsed = time.monotonic() - started
        await plane.publish(["echo"], {"n": 2}, job_id="next")
        assert (await plane.wait_terminal("next"))["result"] == {"n": 2}
    assert elapsed < 5, f"failed after {elapsed:.1f} s (the call timeout is 20 s)"
    assert (terminal["kind"], terminal["error"]["code"], terminal["error"]["attempt"]) == (
        "failed",
        "frame_too_large",
        1,
    )
    assert terminal["error"]["message"] == (
        "the runtime's answer is too large: frame of 4294967295 bytes exceeds the limit of 1024"
        " bytes"
    )
    assert runtime.connections == 2


@pytest.mark.separate_runtime
async def test_an_oversized_frame_of_an_unnamed_call_retries_the_calls_in_flight(
    plane: DataPlane, tmp_path: Path
) -> None:
    async def header_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(encode_frame(FAKE_HELLO))
        for _ in range(2):
            assert await read_frame(reader) is not None
        writer.write(struct.pack(">I", 5000))  # a header, and no body at all
        await reader.read()

    async with FakeRuntime(tmp_path / "echo.sock", misbehaving_once(header_only)):
        plane.sockets["echo"] = tmp_path / "echo.sock"
        await plane.start_sidecar("echo", spec=ECHO, sidecar={"max_frame": "1k"})
        await plane.publish(["echo"], {"n": 1}, job_id="one")
        await plane.publish(["echo"], {"n": 2}, job_id="two")
        terminals = [await plane.wait_terminal(job) for job in ("one", "two")]
    # neither can be blamed: both failed as connection_error, were retried, and succeeded
    assert [(t["kind"], t["result"]) for t in terminals] == [
        ("succeeded", {"n": 1}),
        ("succeeded", {"n": 2}),
    ]
    attempts = [e["attempt"] for e in await plane.events() if e["kind"] == "running"]
    assert sorted(attempts) == [1, 1, 2, 2]


@pytest.mark.separate_runtime
async def test_a_backlog_waits_for_a_runtime_that_is_away_instead_of_failing(
    plane: DataPlane,
) -> None:
    spec = {"timeout": "1s"}  # shorter than the time the runtime is away
    runtime, sidecar = await plane.start_actor("doubler", "examples.pipeline:double", spec=spec)
    assert runtime is not None  # the default mode's runtime process
    runtime.kill(signal.SIGKILL)
    runtime.wait(10)
    await plane.wait_for(
        lambda: _logged(sidecar.log(), "the runtime is away; taking no new work"),
        what="the sidecar to notice",
    )
    for i in range(3):
        await plane.publish(["doubler"], {"value": i}, job_id=f"backlog-{i}")
    await asyncio.sleep(2)  # the runtime stays away for two call timeouts (the fault itself)
    groups = await plane.redis.xinfo_groups(plane.keys.actor_stream("doubler"))
    assert [(g["pending"], g["lag"]) for g in groups] == [(0, 3)]  # nothing taken meanwhile
    plane.start_runtime("doubler", "examples.pipeline:double")  # the supervisor's restart
    for i in range(3):
        terminal = await plane.wait_terminal(f"backlog-{i}")
        assert (terminal["kind"], terminal["result"]) == ("succeeded", {"value": 2 * i})
    await plane.wait_quiescent()
    attempts = [e["attempt"] for e in await plane.events() if e["kind"] == "running"]
    assert attempts == [1, 1, 1]


async def _logged(log: str, text: str) -> bool:
    return text in log


async def test_redis_errors_in_the_consume_loop_are_retried_not_fatal(plane: DataPlane) -> None:
    _runtime, sidecar = await plane.start_actor("doubler", "examples.pipeline:double")
    stream = plane.keys.actor_stream("doubler")
    # the actor's stream becomes something else: every read fails with WRONGTYPE
    await plane.redis.delete(stream)
    await plane.redis.set(stream, b"not a stream")
    await plane.wait_for(
        lambda: _logged(sidecar.log(), "reading the stream of doubler failed; retrying"),
        what="the failed read",
        watch=[sidecar],
    )
    await plane.redis.delete(stream)  # the group is recreated by the next read
    await plane.publish(["doubler"], {"value": 4}, job_id="survived")
    assert (await plane.wait_terminal("survived"))["result"] == {"value": 8}
    assert sidecar.alive()
