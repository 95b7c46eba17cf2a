from __future__ import annotations

import asyncio
import os
import stat
import struct
from pathlib import Path

import pytest

from ai.backend.common.framing import encode_frame, read_frame
from ai.backend.testutils.processes import wait_until
from ai.backend.testutils.runtime import RuntimeLauncher


async def test_hello_then_plain_function(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.pipeline:double", "--concurrency", "4")
    assert {k: v for k, v in rt.hello.items() if k != "pid"} == {
        "type": "hello",
        "protocol": 1,
        "handler": "examples.pipeline:double",
        "kind": "function",
        "concurrency": 4,
        "models": [],
    }
    assert rt.hello["pid"] == rt.child.pid
    assert await rt.call("c1", {"value": 10, "keep": "me"}) == [
        {"type": "result", "id": "c1", "status": "ok", "result": {"value": 20, "keep": "me"}}
    ]


async def test_async_function(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.pipeline:async_double")
    assert rt.hello["kind"] == "async_function"
    [result] = await rt.call("a", {"value": 4})
    assert result["result"] == {"value": 8}


async def test_generator_yields_partials_and_returns_result(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.streaming:tokens")
    assert rt.hello["kind"] == "generator"
    frames = await rt.call("g", {"text": "hello big world"})
    assert frames == [
        {"type": "partial", "id": "g", "data": {"token": "hello"}},
        {"type": "partial", "id": "g", "data": {"token": "big"}},
        {"type": "partial", "id": "g", "data": {"token": "world"}},
        {
            "type": "result",
            "id": "g",
            "status": "ok",
            "result": {"text": "hello big world", "tokens": 3},
        },
    ]


async def test_async_generator_last_yield_is_result(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.streaming:async_tokens")
    assert rt.hello["kind"] == "async_generator"
    frames = await rt.call("ag", {"text": "a b"})
    assert [f["type"] for f in frames] == ["partial", "partial", "result"]
    assert frames[-1]["result"] == {"token": "b"}


async def test_class_is_instantiated_once(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.stateful:Counter")
    assert rt.hello["kind"] == "function"
    for expected in (1, 2, 3):
        [result] = await rt.call(f"c{expected}", "x")
        assert result["result"] == {"calls": expected, "payload": "x"}


async def test_context_progress_and_headers(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.streaming:with_progress")
    frames = await rt.call(
        "p", {"steps": 2}, headers={"trace_id": "t-9"}, job_id="job-1", attempt=1
    )
    assert frames == [
        {"type": "progress", "id": "p", "progress": 1, "total": 2, "message": "step 1"},
        {"type": "progress", "id": "p", "progress": 2, "total": 2, "message": "step 2"},
        {
            "type": "result",
            "id": "p",
            "status": "ok",
            "result": {"steps": 2, "job_id": "job-1", "trace": "t-9"},
        },
    ]


async def test_app_models(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.models:app")
    assert rt.hello["kind"] == "app"
    assert rt.hello["models"] == [
        {
            "name": "scaler",
            "version": "1",
            "inputs": [{"name": "values", "datatype": "FP32", "shape": [-1]}],
            "outputs": [{"name": "values", "datatype": "FP32", "shape": [-1]}],
        },
        {"name": "scaler", "version": "2", "inputs": [], "outputs": []},
    ]
    [v1] = await rt.call("m1", {"values": [1.5, 2]}, model="scaler", version="1")
    assert v1["result"] == {"values": [3.0, 4.0]}
    [latest] = await rt.call("m2", {"values": [1], "factor": 3}, model="scaler")
    assert latest["result"] == {"values": [30]}
    [missing] = await rt.call("m3", {"values": []}, model="nope")
    assert (missing["status"], missing["error"], missing["message"]) == (
        "error",
        "processing_error",
        "no model nope in this app",
    )


@pytest.mark.parametrize("handler", ["examples.failures:async_slow", "examples.failures:slow"])
async def test_twenty_concurrent_calls_on_one_connection(
    runtimes: RuntimeLauncher, handler: str
) -> None:
    rt = await runtimes.connect(handler, "--concurrency", "20")
    for i in range(20):
        # the later calls sleep less: results come back out of order
        await rt.send(
            {"type": "call", "id": f"c{i}", "payload": {"seconds": (20 - i) / 100, "i": i}}
        )
    results: dict[str, int] = {}
    while len(results) < 20:
        frame = await asyncio.wait_for(read_frame(rt.reader), 10)
        assert frame is not None and frame["type"] == "result"
        results[frame["id"]] = frame["result"]["i"]
    assert results == {f"c{i}": i for i in range(20)}


async def test_handler_exception_is_a_processing_error(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.failures:fail_not_retryable")
    [result] = await rt.call("e", 1)
    assert {k: result[k] for k in ("status", "error", "message", "exc_type", "severity")} == {
        "status": "error",
        "error": "processing_error",
        "message": "never retried",
        "exc_type": "NotRetryableError",
        "severity": "fatal",
    }
    assert result["exc_mro"] == ["NotRetryableError", "ValueError", "Exception"]
    assert result["traceback"].startswith("Traceback (most recent call last):")
    assert result["traceback"].rstrip().endswith("NotRetryableError: never retried")
    [again] = await rt.call("e2", 2)  # still serving
    assert again["exc_type"] == "NotRetryableError"


@pytest.mark.parametrize(
    ("handler", "code", "retry_after"),
    [
        ("examples.failures:oom", "oom_error", 30),
        ("examples.failures:cuda_oom", "cuda_oom_error", 60),
    ],
)
async def test_out_of_memory_is_recoverable(
    runtimes: RuntimeLauncher, handler: str, code: str, retry_after: int
) -> None:
    rt = await runtimes.connect(handler)
    [result] = await rt.call("o", None)
    assert (result["error"], result["severity"], result["retry_after"]) == (
        code,
        "recoverable",
        retry_after,
    )


async def test_result_that_is_not_json(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.failures:not_json")
    [result] = await rt.call("n", None)
    assert (result["status"], result["error"]) == ("error", "processing_error")
    assert result["message"].startswith("the handler's output is not JSON-serializable")


async def test_oversized_frame_is_refused_and_serving_goes_on(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.pipeline:echo", "--max-frame", "1k")
    big = encode_frame({"type": "call", "id": "big", "payload": "x" * 5000})
    rt.writer.write(big)
    error = await asyncio.wait_for(read_frame(rt.reader), 10)
    assert error == {
        "type": "error",
        "error": "frame_too_large",
        "message": f"frame of {len(big) - 4} bytes exceeds the limit of 1024 bytes",
    }
    [result] = await rt.call("small", "ok")
    assert result["result"] == "ok"


async def test_invalid_json_is_refused_and_serving_goes_on(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.pipeline:echo")
    body = b'{"type": "call", "id": "bad", '
    rt.writer.write(struct.pack(">I", len(body)) + body)
    error = await asyncio.wait_for(read_frame(rt.reader), 10)
    assert error is not None
    assert (error["type"], error["error"]) == ("error", "invalid_json")
    await rt.send({"type": "launch"})
    unknown = await asyncio.wait_for(read_frame(rt.reader), 10)
    assert unknown == {
        "type": "error",
        "id": None,
        "error": "invalid_json",
        "message": "unknown frame type 'launch'",
    }
    [result] = await rt.call("good", [1, None, "ü"])
    assert result["result"] == [1, None, "ü"]


async def test_cancel_of_an_async_call(runtimes: RuntimeLauncher) -> None:
    rt = await runtimes.connect("examples.failures:async_slow")
    await rt.send({"type": "call", "id": "slow", "payload": {"seconds": 60}})
    await rt.send({"type": "cancel", "id": "slow"})
    [result] = await rt.frames_until_result("slow")
    assert (result["status"], result["error"], result["message"]) == (
        "error",
        "timeout",
        "the call was cancelled",
    )


async def test_socket_mode_stale_socket_and_parent_dir(
    runtimes: RuntimeLauncher, tmp_path: Path
) -> None:
    socket_path = tmp_path / "sockets" / "rt.sock"
    socket_path.parent.mkdir(parents=True)
    socket_path.write_text("stale")  # left over by a crashed runtime
    child, path = runtimes.start("examples.pipeline:echo")
    assert path == socket_path
    wait_until(
        lambda: socket_path.exists() and stat.S_ISSOCK(socket_path.stat().st_mode),
        timeout=10,
        what="the socket",
        watch=[child],
    )
    assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o660
    child.kill(15)
    assert child.wait(10) == 0
    assert not socket_path.exists()  # removed on a clean exit


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        ("examples.pipeline", "runtime: handler 'examples.pipeline' must look like"),
        ("examples.nope:f", "runtime: cannot import 'examples.nope'"),
        ("examples.pipeline:nope", "runtime: 'examples.pipeline' has no attribute 'nope'"),
    ],
)
def test_bad_handler_reference(runtimes: RuntimeLauncher, handler: str, message: str) -> None:
    child = runtimes.processes.start(
        "bad", ["runtime", "run", "--handler", handler, "--socket", "/tmp/never.sock"]
    )
    assert child.wait(20) == 3
    assert message in child.log()
