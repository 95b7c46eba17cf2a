"""The runtime's Unix-socket server: one ``hello``, then many calls in flight per connection.

Calls run through the handler layer of calls.py (shared with the sidecar's in-process mode);
this module adds the socket: frames in, frames out (several per write), ``cancel`` and ``ping``.
Frames a worker thread produces (partials, progress) are handed to the loop with
``call_soon_threadsafe`` before the call's result is, so they are written in order and before
the result.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from ai.backend.common.aio import new_runner, tune_gc
from ai.backend.common.framing import (
    DEFAULT_MAX_FRAME,
    CoalescingWriter,
    FrameTooLarge,
    IncompleteFrame,
    InvalidFrame,
    discard_frame_body,
    read_frame,
)

from .calls import CallRunner, cancelled_result, hello_frame, new_threads, outgoing_frame
from .loader import LoadedHandler
from .workers import HandlerThreads

SOCKET_MODE = 0o660
EXIT_STUCK = 4  # a sync handler kept running past its call's end: restart me (see RuntimeServer)

log = logging.getLogger(__spec__.name if __spec__ else __name__)


class RuntimeServer:
    def __init__(
        self,
        handler: LoadedHandler,
        *,
        socket_path: Path,
        concurrency: int = 1,
        max_frame: int = DEFAULT_MAX_FRAME,
        exit_when_stuck: float | None = None,
    ) -> None:
        """``exit_when_stuck``: when a sync handler still runs this many seconds after its
        call was cancelled (the sidecar timed it out), exit with :data:`EXIT_STUCK` so that the
        supervisor (the agent) starts a fresh runtime; otherwise the thread would hold its
        concurrency slot for as long as the handler runs. ``None``: never."""
        self.exit_when_stuck = exit_when_stuck
        self.handler = handler
        self.socket_path = socket_path
        self.concurrency = concurrency
        self.max_frame = max_frame
        self.runner: CallRunner | None = None  # made with the loop, in serve()
        self._connections: set[_Connection] = set()

    def hello(self) -> dict[str, Any]:
        return hello_frame(self.handler, self.concurrency)

    async def serve(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set; then close connections and remove the socket."""
        threads = new_threads(self.concurrency)
        self.runner = CallRunner(self.handler, threads)
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Listen on a temporary name, then rename: the socket appears at its path only when it
        # accepts connections and has its mode, and a stale socket is replaced in one step.
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        staging.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(
            self._on_connection, path=str(staging), limit=2**20
        )
        os.chmod(staging, SOCKET_MODE)
        os.replace(staging, path)
        log.info("serving %s (%s) on %s", self.handler.ref, self.handler.description, path)
        watchdog = None
        if self.exit_when_stuck is not None:
            watchdog = asyncio.create_task(watch_stuck_threads(threads, self.exit_when_stuck))
        try:
            async with server:
                await stop.wait()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            for connection in list(self._connections):
                connection.abort()
            threads.shutdown()
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection = _Connection(self, reader, writer)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)


class _Connection:
    def __init__(
        self, server: RuntimeServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.out = CoalescingWriter(writer)
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.calls: dict[str, asyncio.Task[None]] = {}
        self._drain_lock = asyncio.Lock()

    def send(self, frame: dict[str, Any]) -> None:
        """Write one frame (from the loop's thread). A frame that cannot be encoded or is too
        large becomes an error result of its call, so the caller always hears back."""
        if not self.writer.is_closing():
            self.out.write(outgoing_frame(frame, self.server.max_frame))

    def send_threadsafe(self, frame: dict[str, Any]) -> None:
        """From any thread; from the loop's own (``ctx`` of an async handler) at once, so that
        it leaves before the call's result."""
        if threading.get_ident() == self.loop_thread:
            self.send(frame)
        else:
            self.loop.call_soon_threadsafe(self.send, frame)

    async def flush(self) -> None:
        async with self._drain_lock:
            try:
                await self.out.drain_if_backed_up()
            except ConnectionError:
                pass

    def abort(self) -> None:
        for task in self.calls.values():
            task.cancel()
        self.out.flush()
        self.writer.close()

    async def run(self) -> None:
        self.send(self.server.hello())
        try:
            while True:
                try:
                    frame = await read_frame(self.reader, max_frame=self.server.max_frame)
                except FrameTooLarge as e:
                    self.send({"type": "error", "error": "frame_too_large", "message": str(e)})
                    await discard_frame_body(self.reader, e.size)
                    continue
                except InvalidFrame as e:
                    self.send({"type": "error", "error": "invalid_json", "message": str(e)})
                    continue
                if frame is None:
                    break
                self._dispatch(frame)
        except (IncompleteFrame, ConnectionError):
            pass
        finally:
            for task in list(self.calls.values()):
                task.cancel()
            self.out.flush()
            self.writer.close()

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        call_id = frame.get("id")
        if kind == "call":
            if not isinstance(call_id, str) or not call_id:
                self.send({"type": "error", "error": "invalid_json", "message": "call has no id"})
            elif call_id in self.calls:
                self.send(
                    {
                        "type": "error",
                        "id": call_id,
                        "error": "invalid_json",
                        "message": f"call {call_id} is already in flight",
                    }
                )
            else:
                task = asyncio.create_task(self._call(call_id, frame))
                self.calls[call_id] = task
                task.add_done_callback(functools.partial(self._call_done, call_id))
        elif kind == "cancel":
            running = self.calls.get(call_id) if isinstance(call_id, str) else None
            if running is not None:
                running.cancel()
        elif kind == "ping":
            self.send({"type": "pong", "id": call_id})
        else:
            self.send(
                {
                    "type": "error",
                    "id": call_id,
                    "error": "invalid_json",
                    "message": f"unknown frame type {kind!r}",
                }
            )

    async def _call(self, call_id: str, frame: dict[str, Any]) -> None:
        runner = self.server.runner
        assert runner is not None
        self.send(await runner.run(call_id, frame, self.send, self.send_threadsafe))
        await self.flush()

    def _call_done(self, call_id: str, task: asyncio.Task[None]) -> None:
        self.calls.pop(call_id, None)
        if task.cancelled():  # also when cancelled before it started to run
            self.send(cancelled_result(call_id))


async def watch_stuck_threads(threads: HandlerThreads, limit: float) -> None:
    """Exit the process (:data:`EXIT_STUCK`) once a handler thread has kept running an
    abandoned call for ``limit`` seconds. Checked periodically: a thread cannot signal it."""
    loop = asyncio.get_running_loop()
    first_seen: dict[int, float] = {}
    while True:
        await asyncio.sleep(min(1.0, limit / 4))
        now = loop.time()
        first_seen = {id(f): first_seen.get(id(f), now) for f in threads.abandoned()}
        stuck = [since for since in first_seen.values() if now - since >= limit]
        if stuck:
            log.error(
                "%d handler thread(s) still running a cancelled call after %.1f s; exiting"
                " (status %d) so that a fresh runtime takes over",
                len(stuck),
                limit,
                EXIT_STUCK,
            )
            logging.shutdown()
            os._exit(EXIT_STUCK)  # the stuck thread would block a normal exit


async def run_server(server: RuntimeServer) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.serve(stop)


def run(server: RuntimeServer) -> None:
    """Run the server on uvloop when installed, else on asyncio's default loop."""
    tune_gc()
    with new_runner() as runner:
        runner.run(run_server(server))
