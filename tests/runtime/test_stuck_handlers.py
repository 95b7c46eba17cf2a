"""``--exit-when-stuck``: a sync handler still running after its call was cancelled makes the
runtime exit with status 4, so that its supervisor (the agent) starts a fresh one."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from ai.backend.common.framing import read_frame
from ai.backend.testutils.runtime import RuntimeLauncher

EXIT_STUCK = 4


async def _exit_status(runtime_child: subprocess.Popen[bytes], timeout: float) -> int | None:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, runtime_child.wait, timeout)
    except subprocess.TimeoutExpired:
        return None


async def test_a_sync_handler_running_past_its_cancel_makes_the_runtime_exit(
    runtimes: RuntimeLauncher,
) -> None:
    rt = await runtimes.connect("examples.failures:stuck", "--exit-when-stuck", "0.5")
    await rt.send({"type": "call", "id": "s1", "payload": {"seconds": 60}})
    started = await asyncio.wait_for(read_frame(rt.reader), 10)
    assert started == {"type": "progress", "id": "s1", "progress": 0, "message": "started"}
    await rt.send({"type": "cancel", "id": "s1"})
    [cancelled] = await rt.frames_until_result("s1")
    assert cancelled == {
        "type": "result",
        "id": "s1",
        "status": "error",
        "error": "timeout",
        "message": "the call was cancelled",
        "severity": "fatal",
    }
    assert await _exit_status(rt.child.process, timeout=10) == EXIT_STUCK
    assert "still running a cancelled call after 0.5 s; exiting (status 4)" in rt.child.log()


@pytest.mark.parametrize(
    ("handler", "cancel"),
    [
        ("examples.failures:slow", False),  # running long, but nobody gave up on it
        ("examples.failures:async_slow", True),  # cancelled, but async: it stops at once
    ],
)
async def test_a_runtime_without_abandoned_threads_keeps_running(
    runtimes: RuntimeLauncher, handler: str, cancel: bool
) -> None:
    rt = await runtimes.connect(handler, "--exit-when-stuck", "0.3", "--concurrency", "2")
    await rt.send({"type": "call", "id": "s1", "payload": {"seconds": 2}})
    if cancel:
        await rt.send({"type": "cancel", "id": "s1"})
        [cancelled] = await rt.frames_until_result("s1")
        assert cancelled["message"] == "the call was cancelled"
    assert await _exit_status(rt.child.process, timeout=1.5) is None
    [done] = await rt.call("s2", {"seconds": 0})
    assert (done["status"], done["result"]) == ("ok", {"seconds": 0})


def test_the_agent_knows_the_runtimes_exit_statuses() -> None:
    from ai.backend.agent.clients import processes
    from ai.backend.runtime import entry, server

    assert (processes.EXIT_BAD_HANDLER, processes.EXIT_STUCK) == (
        entry.EXIT_BAD_HANDLER,
        server.EXIT_STUCK,
    )
