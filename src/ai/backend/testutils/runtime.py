"""Runtimes started as child processes, and raw frame connections to them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ai.backend.common.framing import read_frame, write_frame

from .processes import Child, ProcessGroup, wait_until


@dataclass
class RuntimeConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    hello: dict[str, Any]
    child: Child

    async def send(self, frame: dict[str, Any]) -> None:
        await write_frame(self.writer, frame)

    async def frames_until_result(self, call_id: str) -> list[dict[str, Any]]:
        """Every frame of ``call_id`` up to and including its result (frames of other calls
        are not expected here)."""
        frames = []
        while True:
            frame = await asyncio.wait_for(read_frame(self.reader), 10)
            assert frame is not None, "the runtime closed the connection"
            frames.append(frame)
            if frame.get("type") == "result" and frame.get("id") == call_id:
                return frames

    async def call(self, call_id: str, payload: Any, **extra: Any) -> list[dict[str, Any]]:
        await self.send({"type": "call", "id": call_id, "payload": payload, **extra})
        return await self.frames_until_result(call_id)


@dataclass
class RuntimeLauncher:
    processes: ProcessGroup
    socket_dir: Path

    def start(self, handler: str, *args: str, name: str = "rt") -> tuple[Child, Path]:
        """Start ``runtime run`` on ``<socket_dir>/sockets/<name>.sock``; return once it listens."""
        socket_path = self.socket_dir / "sockets" / f"{name}.sock"
        child = self.processes.start(
            f"runtime-{name}",
            ["runtime", "run", "--handler", handler, "--socket", str(socket_path), *args],
        )
        wait_until(socket_path.exists, timeout=20, what=f"runtime {name}", watch=[child])
        return child, socket_path

    async def connect(self, handler: str, *args: str) -> RuntimeConnection:
        child, socket_path = self.start(handler, *args)
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        hello = await asyncio.wait_for(read_frame(reader), 10)
        assert hello is not None
        return RuntimeConnection(reader, writer, hello, child)


FAKE_HELLO = {"type": "hello", "protocol": 1, "handler": "fake:runtime", "concurrency": 4}
ConnectionScript = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class FakeRuntime:
    """A runtime played by the test, on a Unix socket: connection n (from 1) runs
    ``script(n, reader, writer)``, which says hello (or not) and answers calls its own way."""

    socket_path: Path
    script: ConnectionScript
    connections: int = 0

    async def __aenter__(self) -> FakeRuntime:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(self.connections, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def misbehaving_once(
    first: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> ConnectionScript:
    """A script whose first connection runs ``first`` (hello included); every later connection
    says a proper hello and echoes calls."""

    async def script(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if n == 1:
            await first(reader, writer)
            return
        await write_frame(writer, FAKE_HELLO)
        await echo_calls(reader, writer)

    return script


async def echo_calls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer every call with its payload, as a runtime of ``echo`` would."""
    while (frame := await read_frame(reader)) is not None:
        if frame.get("type") == "call":
            await write_frame(
                writer,
                {"type": "result", "id": frame["id"], "status": "ok", "result": frame["payload"]},
            )
