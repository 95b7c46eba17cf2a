"""The sidecar's one persistent connection to its runtime (DESIGN.md §4.3).

Many calls are in flight at once, matched to their frames by ``id``. If the runtime goes away,
every call in flight fails with :class:`RuntimeUnavailable` (the sidecar retries those
envelopes) and the client reconnects with exponential backoff; new calls wait for the
connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai.backend.common.aio import cancel_and_wait
from ai.backend.common.framing import (
    DEFAULT_MAX_FRAME,
    CoalescingWriter,
    FrameTooLarge,
    IncompleteFrame,
    InvalidFrame,
    decode_body,
    discard_frame_body,
    encode_frame,
    peek_frame_id,
    read_frame_bytes,
)
from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

FrameListener = Callable[[dict[str, Any]], None]

RECONNECT_MIN = 0.05
RECONNECT_MAX = 2.0


def _expire(future: asyncio.Future[dict[str, Any]]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class RuntimeUnavailable(Exception):
    """The connection to the runtime was lost (or never made) while the call was in flight."""


@dataclass
class _PendingCall:
    future: asyncio.Future[dict[str, Any]]
    on_frame: FrameListener | None


@dataclass
class RuntimeHello:
    handler: str
    kind: str
    concurrency: int
    models: list[dict[str, Any]] = field(default_factory=list)
    pid: int | None = None


class RuntimeClient:
    def __init__(self, socket_path: Path, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.socket_path = socket_path
        self.max_frame = max_frame
        self.hello: RuntimeHello | None = None
        self._writer: CoalescingWriter | None = None
        self._connected = asyncio.Event()
        self._pending: dict[str, _PendingCall] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._maintain(), name="runtime-connection")

    async def wait_connected(self) -> RuntimeHello:
        await self._connected.wait()
        assert self.hello is not None
        return self.hello

    async def call(
        self,
        call_id: str,
        frame: dict[str, Any],
        on_frame: FrameListener | None = None,
        *,
        timeout: float,
    ) -> dict[str, Any]:
        """Send a call and wait for its ``result`` frame; ``partial`` and ``progress`` frames go
        to ``on_frame``. Raises :class:`FrameTooLarge` if the call cannot be sent,
        :class:`RuntimeUnavailable` if the connection drops first, and :class:`TimeoutError`
        (after asking the runtime to cancel the call) when ``timeout`` seconds pass, waiting for
        the connection included."""
        data = encode_frame(frame, max_frame=self.max_frame)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        # one timer for the whole call: cheaper than a timeout context per call
        timer = loop.call_later(timeout, _expire, future)
        try:
            if not self._connected.is_set():
                waiter: asyncio.Future[Any] = asyncio.ensure_future(self._connected.wait())
                either: set[asyncio.Future[Any]] = {waiter, future}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if future.done():
                    waiter.cancel()
                    return future.result()  # raises TimeoutError
            writer = self._writer
            assert writer is not None
            self._pending[call_id] = _PendingCall(future, on_frame)
            writer.write(data)
            await writer.drain_if_backed_up()
            try:
                return await future
            except TimeoutError:
                self.cancel(call_id)
                raise
        finally:
            timer.cancel()
            self._pending.pop(call_id, None)

    def cancel(self, call_id: str) -> None:
        """Forget the call and ask the runtime to cancel it; a late result is ignored."""
        self._pending.pop(call_id, None)
        writer = self._writer
        if writer is not None:
            writer.write(encode_frame({"type": "cancel", "id": call_id}))

    async def close(self) -> None:
        self._closed = True
        await cancel_and_wait(self._task)
        self._fail_pending("the sidecar is shutting down")

    async def _maintain(self) -> None:
        delay = RECONNECT_MIN
        while not self._closed:
            try:
                reader, writer = await asyncio.open_unix_connection(
                    str(self.socket_path), limit=2**20
                )
            except (FileNotFoundError, ConnectionRefusedError, OSError) as e:
                if delay == RECONNECT_MIN:
                    log.info("waiting for the runtime at {} ({})", self.socket_path, e)
                await asyncio.sleep(delay)  # reconnect backoff, not synchronisation
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            try:
                await self._serve(reader, writer)
            finally:
                self._connected.clear()
                self._writer = None
                writer.close()
                self._fail_pending("the connection to the runtime was lost")
            delay = RECONNECT_MIN

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            body = await read_frame_bytes(reader, max_frame=self.max_frame)
            if body is None:
                return
            hello = decode_body(body)
            if hello.get("type") != "hello":
                log.error("runtime sent {!r} before hello; reconnecting", hello.get("type"))
                return
            self.hello = RuntimeHello(
                handler=str(hello.get("handler", "")),
                kind=str(hello.get("kind", "")),
                concurrency=int(hello.get("concurrency") or 1),
                models=list(hello.get("models") or []),
                pid=hello.get("pid"),
            )
            self._writer = CoalescingWriter(writer)
            self._connected.set()
            log.info(
                "connected to runtime {} (pid {}, {})",
                self.hello.handler,
                self.hello.pid,
                self.hello.kind,
            )
            while True:
                try:
                    body = await read_frame_bytes(reader, max_frame=self.max_frame)
                except FrameTooLarge as e:
                    log.error("runtime sent a frame of {} bytes; skipped", e.size)
                    await discard_frame_body(reader, e.size)
                    continue
                if body is None:
                    return
                self._on_body(body)
        except (IncompleteFrame, InvalidFrame, ConnectionError) as e:
            log.warning("runtime connection broken: {}", e)

    def _on_body(self, body: bytes) -> None:
        try:
            frame = decode_body(body)
        except InvalidFrame as e:
            call_id = peek_frame_id(body)
            pending = self._pending.pop(call_id, None) if call_id else None
            log.error("runtime sent an invalid frame (call {}): {}", call_id, e)
            if pending is not None and not pending.future.done():
                pending.future.set_result(
                    {
                        "type": "result",
                        "id": call_id,
                        "status": "error",
                        "error": "invalid_json",
                        "message": f"the runtime sent an invalid frame: {e}",
                    }
                )
            return
        kind = frame.get("type")
        call = self._pending.get(frame.get("id"))  # type: ignore[arg-type]
        if call is None:
            if kind == "error":
                log.error("runtime reports {}: {}", frame.get("error"), frame.get("message"))
            return  # a late frame of a cancelled or timed-out call
        if kind == "result":
            if not call.future.done():
                call.future.set_result(frame)
        elif kind == "error":
            if not call.future.done():
                call.future.set_result({**frame, "type": "result", "status": "error"})
        elif call.on_frame is not None:
            call.on_frame(frame)

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for call in pending.values():
            if not call.future.done():
                call.future.set_exception(RuntimeUnavailable(reason))
