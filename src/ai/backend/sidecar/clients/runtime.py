"""The sidecar's one persistent connection to its runtime (DESIGN.md §4.3).

Many calls are in flight at once, matched to their frames by ``id``. If the runtime goes away,
every call in flight fails with :class:`RuntimeUnavailable` (the sidecar retries those
envelopes as ``connection_error``), a call made meanwhile fails at once the same way, and the
client reconnects with exponential backoff; the consume loop takes no new work until it is back
(:attr:`RuntimeClient.is_open`).

Nothing the runtime sends ends the connection task: a malformed ``hello`` is reported and the
client connects again; a frame announced above ``max_frame`` fails its call with
``frame_too_large`` and the connection is dropped and made again, instead of reading the
announced body (the other calls in flight fail as ``connection_error`` and are retried).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ai.backend.common.aio import cancel_and_wait
from ai.backend.common.framing import (
    DEFAULT_MAX_FRAME,
    CoalescingWriter,
    FrameTooLarge,
    IncompleteFrame,
    InvalidFrame,
    decode_body,
    encode_frame,
    peek_frame_id,
    read_frame_bytes,
)
from ai.backend.common.log import BraceStyleAdapter

from ..services.retrying import Backoff

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

FrameListener = Callable[[dict[str, Any]], None]

RECONNECT_MIN = 0.05
RECONNECT_MAX = 2.0
PEEK_BYTES = 512  # of an oversized frame's body, to find its call's id
PEEK_TIMEOUT = 1.0


async def _peek_call_id(reader: asyncio.StreamReader, limit: int) -> str | None:
    """The call id in the first ``limit`` bytes of a frame body, read for at most
    ``PEEK_TIMEOUT`` seconds (the runtime may stall), or ``None``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PEEK_TIMEOUT
    head = b""
    while len(head) < limit and peek_frame_id(head) is None:
        try:
            chunk = await asyncio.wait_for(reader.read(limit - len(head)), deadline - loop.time())
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        head += chunk
    return peek_frame_id(head)


def _expire(future: asyncio.Future[dict[str, Any]]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class RuntimeUnavailable(Exception):
    """The connection to the runtime was lost (or never made) while the call was in flight."""


class InvalidHello(Exception):
    """The runtime's first frame is not a usable ``hello``."""


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

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> RuntimeHello:
        """Raises :class:`InvalidHello` naming what is wrong."""
        if frame.get("type") != "hello":
            raise InvalidHello(f"expected hello, got a frame of type {frame.get('type')!r}")
        concurrency = frame.get("concurrency", 1)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidHello(f"hello.concurrency must be a positive integer: {concurrency!r}")
        models = frame.get("models") or []
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise InvalidHello("hello.models must be a list of objects")
        pid = frame.get("pid")
        return cls(
            handler=str(frame.get("handler", "")),
            kind=str(frame.get("kind", "")),
            concurrency=concurrency,
            models=models,
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        )


class ActorRuntime(Protocol):
    """Where an actor's calls go: its runtime over the socket (:class:`RuntimeClient`), or its
    handler inside the sidecar (``clients/inprocess.py``)."""

    @property
    def is_open(self) -> bool: ...

    async def wait_open(self) -> None: ...

    async def wait_connected(self) -> RuntimeHello: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...

    async def call(
        self,
        call_id: str,
        frame: dict[str, Any],
        on_frame: FrameListener | None = None,
        *,
        timeout: float,
    ) -> dict[str, Any]: ...


class RuntimeClient:
    def __init__(
        self,
        socket_path: Path,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        on_error: Callable[[str], None] | None = None,
        on_hello: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.max_frame = max_frame
        self._on_error = on_error  # counts an unexpected failure of the connection task
        self._on_hello = on_hello  # gets every valid hello frame (one per connection)
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

    @property
    def is_open(self) -> bool:
        """Connected: calls can be made (the consume loop's gate)."""
        return self._connected.is_set()

    async def wait_open(self) -> None:
        await self._connected.wait()

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
        :class:`RuntimeUnavailable` if there is no connection or it drops first, and
        :class:`TimeoutError` (after asking the runtime to cancel the call) when ``timeout``
        seconds pass."""
        data = encode_frame(frame, max_frame=self.max_frame)
        writer = self._writer
        if writer is None or not self._connected.is_set():
            raise RuntimeUnavailable("the runtime is not connected")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        # one timer for the whole call: cheaper than a timeout context per call
        timer = loop.call_later(timeout, _expire, future)
        try:
            self._pending[call_id] = _PendingCall(future, on_frame)
            writer.write(data)
            try:
                if writer.backed_up():
                    await writer.drain()
            except ConnectionError as e:
                raise RuntimeUnavailable(f"the connection to the runtime broke: {e}") from None
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
        backoff = Backoff(RECONNECT_MIN, RECONNECT_MAX)
        while not self._closed:
            try:
                reader, writer = await asyncio.open_unix_connection(
                    str(self.socket_path), limit=2**20
                )
            except OSError as e:
                if backoff.attempts == 0:
                    log.info("waiting for the runtime at {} ({})", self.socket_path, e)
                await backoff.wait()
                continue
            served = False
            try:
                served = await self._serve(reader, writer)
            except Exception:
                log.exception("the runtime connection failed; connecting again")
                if self._on_error is not None:
                    self._on_error("runtime-connection")
            finally:
                self._connected.clear()
                self._writer = None
                writer.close()
                self._fail_pending("the connection to the runtime was lost")
            if served:
                backoff.reset()  # it worked: connect again at once
            else:
                await backoff.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one connection until it ends; false if the runtime never said a valid hello."""
        try:
            body = await read_frame_bytes(reader, max_frame=self.max_frame)
            if body is None:
                return False
            try:
                hello_frame = decode_body(body)
                self.hello = RuntimeHello.from_frame(hello_frame)
            except (InvalidHello, InvalidFrame) as e:
                log.error("the runtime's hello is not valid ({}); connecting again", e)
                return False
            self._writer = CoalescingWriter(writer)
            self._connected.set()
            if self._on_hello is not None:
                self._on_hello(hello_frame)
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
                    await self._fail_oversized(reader, e)
                    return True
                if body is None:
                    return True
                self._on_body(body)
        except (IncompleteFrame, ConnectionError) as e:
            log.warning("runtime connection broken: {}", e)
            return self._writer is not None

    async def _fail_oversized(self, reader: asyncio.StreamReader, error: FrameTooLarge) -> None:
        """The runtime announced a frame above ``max_frame``: fail its call with
        ``frame_too_large`` when its id can be read from the body's first bytes. The caller then
        drops the connection without reading the rest, so the other calls in flight fail as
        ``connection_error`` and are retried (all of them, the culprit too, when its id cannot
        be seen)."""
        call_id = await _peek_call_id(reader, min(error.size, PEEK_BYTES))
        known = call_id is not None and call_id in self._pending
        log.error(
            "runtime sent a frame of {} bytes (limit {}) for {}; reconnecting",
            error.size,
            error.limit,
            call_id if known else "a call it did not name",
        )
        if known:
            self._fail_call(
                call_id, "frame_too_large", f"the runtime's answer is too large: {error}"
            )

    def _fail_call(self, call_id: str | None, code: str, message: str) -> None:
        """Answer call ``call_id`` (if still pending) with an error result of ``code``."""
        pending = self._pending.pop(call_id, None) if call_id else None
        if pending is not None and not pending.future.done():
            pending.future.set_result(
                {
                    "type": "result",
                    "id": call_id,
                    "status": "error",
                    "error": code,
                    "message": message,
                }
            )

    def _on_body(self, body: bytes) -> None:
        try:
            frame = decode_body(body)
        except InvalidFrame as e:
            call_id = peek_frame_id(body)
            log.error("runtime sent an invalid frame (call {}): {}", call_id, e)
            self._fail_call(call_id, "invalid_json", f"the runtime sent an invalid frame: {e}")
            return
        kind = frame.get("type")
        call_id = frame.get("id")
        call = self._pending.get(call_id) if isinstance(call_id, str) else None
        if call is None:
            if kind == "error":
                log.error("runtime reports {}: {}", frame.get("error"), frame.get("message"))
            elif kind == "hello":
                log.warning("runtime said hello again on a connection; ignored")
            return  # a late frame of a cancelled or timed-out call
        if kind == "result":
            if not call.future.done():
                call.future.set_result(frame)
        elif kind == "error":
            if not call.future.done():
                call.future.set_result({**frame, "type": "result", "status": "error"})
        elif call.on_frame is not None:
            try:
                call.on_frame(frame)
            except Exception:
                log.exception("could not handle a {} frame of call {}", kind, call_id)

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for call in pending.values():
            if not call.future.done():
                call.future.set_exception(RuntimeUnavailable(reason))
