"""The runtime must start in any model image: only the standard library and our own source."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import examples.pipeline  # noqa: F401  (the handler it loads)

import ai.backend.runtime.__main__  # noqa: F401  (what the child runs)
from ai.backend.common.framing import read_frame, write_frame
from ai.backend.testutils.processes import wait_until


async def test_runtime_runs_without_site_packages(tmp_path: Path) -> None:
    own_paths = [os.path.abspath(p) for p in sys.path if p and "site-packages" not in p]
    socket_path = tmp_path / "rt.sock"
    log_path = tmp_path / "runtime.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            [
                sys.executable,
                "-S",  # no site-packages: no pydantic, click, redis, orjson or uvloop
                "-c",
                "import sys, runpy; import ai.backend.runtime.entry as e;"
                " assert not [m for m in sys.modules if m.split('.')[0] in"
                " ('pydantic', 'click', 'redis', 'orjson', 'uvloop')], 'third-party import';"
                " sys.exit(e.main())",
                "--handler",
                "examples.pipeline:double",
                "--socket",
                str(socket_path),
            ],
            env={"PYTHONPATH": os.pathsep.join(own_paths), "PATH": os.environ.get("PATH", "")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: socket_path.exists() or child.poll() is not None,
            timeout=20,
            what="the runtime's socket",
        )
        assert child.poll() is None, log_path.read_text()
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        hello = await asyncio.wait_for(read_frame(reader), 10)
        assert hello is not None and hello["kind"] == "function"
        await write_frame(writer, {"type": "call", "id": "c", "payload": {"value": 21}})
        assert await asyncio.wait_for(read_frame(reader), 10) == {
            "type": "result",
            "id": "c",
            "status": "ok",
            "result": {"value": 42},
        }
        writer.close()
    finally:
        child.terminate()
        child.wait(10)
