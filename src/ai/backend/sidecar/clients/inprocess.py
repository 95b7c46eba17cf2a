"""``execution: inprocess``: the actor's handler runs inside the sidecar, through the runtime's
own handler layer (:class:`ai.backend.runtime.calls.CallRunner`: loader, worker threads,
``ctx``, error mapping), with the same answers as over the socket.

Each call sees what the runtime would receive (the call frame encoded and decoded again, so the
handler gets its own copy of the payload, and a call frame above ``max_frame`` raises
:class:`FrameTooLarge`), and every frame it produces goes through the runtime's encoder: a result
or partial that is not JSON-serializable, or too large, fails the call with the same code as in
the default mode (here the handler learns it too: the ``ctx.progress`` or ``yield`` that sent
it raises). A call answered after its deadline is a timeout, as over the socket, also when the
handler blocked the event loop or caught its cancellation. What the mode gives up is isolation:
a handler that crashes the process, or a sync handler stuck in its thread, takes the sidecar
with it (the default mode loses only the runtime, and the sidecar retries its calls).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ai.backend.common.framing import DEFAULT_MAX_FRAME, HEADER_SIZE, decode_body, encode_frame
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.runtime.calls import (
    CallRunner,
    cancelled_result,
    hello_frame,
    new_threads,
    outgoing_frame,
)
from ai.backend.runtime.loader import LoadedHandler
from ai.backend.runtime.workers import HandlerThreads

from .runtime import FrameListener, RuntimeHello

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


def _as_received(frame: dict[str, Any], max_frame: int) -> dict[str, Any]:
    """``frame`` as the sidecar would read it from a runtime: through the runtime's encoder
    (which turns a frame it cannot send into its call's error result), then decoded."""
    return decode_body(outgoing_frame(frame, max_frame)[HEADER_SIZE:])


class _FrameRefused(Exception):
    """A frame of the call could not be encoded: the call fails (its handler is stopped)."""


class _InProcessCall:
    """The frames of one call on their way to the sidecar's listener."""

    __slots__ = ("runtime", "on_frame", "failure", "finished", "expired")

    def __init__(self, runtime: InProcessRuntime, on_frame: FrameListener | None) -> None:
        self.runtime = runtime
        self.on_frame = on_frame
        self.failure: dict[str, Any] | None = None
        self.finished = False
        self.expired = False

    def expire(self, task: asyncio.Task[Any]) -> None:
        """The deadline passed: cancel the call's task (the handler, if async, is cancelled)."""
        if not self.finished:
            self.expired = True
            task.cancel()

    def _decoded(self, frame: dict[str, Any]) -> dict[str, Any]:
        message = _as_received(frame, self.runtime.max_frame)
        if message.get("type") == "result":  # the runtime's encoder refused the frame
            if self.failure is None:
                self.failure = message
            raise _FrameRefused(message.get("message", ""))
        return message

    def emit(self, frame: dict[str, Any]) -> None:
        """From the loop's thread (partials of an async generator, ``ctx`` of async code)."""
        self._deliver(self._decoded(frame))

    def emit_threadsafe(self, frame: dict[str, Any]) -> None:
        """From any thread: delivered in order, and before the call's result."""
        message = self._decoded(frame)
        runtime = self.runtime
        if threading.get_ident() == runtime.loop_thread:
            self._deliver(message)
        else:
            runtime.loop.call_soon_threadsafe(self._deliver, message)

    def _deliver(self, message: dict[str, Any]) -> None:
        if self.finished or self.on_frame is None:
            return
        try:
            self.on_frame(message)
        except Exception:  # the listener's failure is not the handler's
            log.exception(
                "could not handle a {} frame of {}", message.get("type"), message.get("id")
            )


class InProcessRuntime:
    """The sidecar's handler when it runs in the sidecar's own process. Offers what the
    processor and the consume loop use of :class:`~.runtime.RuntimeClient`."""

    def __init__(
        self, handler: LoadedHandler, *, concurrency: int, max_frame: int = DEFAULT_MAX_FRAME
    ) -> None:
        self.handler = handler
        self.max_frame = max_frame
        self.concurrency = concurrency
        self.hello = RuntimeHello.from_frame(hello_frame(handler, concurrency))
        self._threads: HandlerThreads | None = None
        self._runner: CallRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "start() first"
        return self._loop

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self._threads = new_threads(self.concurrency)
        self._runner = CallRunner(self.handler, self._threads)

    @property
    def is_open(self) -> bool:
        return True  # nothing to connect to

    async def wait_open(self) -> None:
        return None

    async def wait_connected(self) -> RuntimeHello:
        return self.hello

    async def call(
        self,
        call_id: str,
        frame: dict[str, Any],
        on_frame: FrameListener | None = None,
        *,
        timeout: float,
    ) -> dict[str, Any]:
        """As :meth:`RuntimeClient.call`: the ``result`` frame; :class:`FrameTooLarge` if the
        call frame is above ``max_frame``; :class:`TimeoutError` after ``timeout`` seconds (an
        async handler is cancelled, a sync one abandoned in its thread)."""
        assert self._runner is not None, "start() first"
        encoded = encode_frame(frame, max_frame=self.max_frame)
        received = decode_body(encoded[HEADER_SIZE:])  # the runtime's own copy of the call
        call = _InProcessCall(self, on_frame)
        loop = self.loop
        deadline = loop.time() + timeout
        task = asyncio.current_task()
        assert task is not None
        base = task.cancelling()
        timer = loop.call_at(deadline, call.expire, task)  # cheaper than asyncio.timeout()
        try:
            answer = await self._runner.run(call_id, received, call.emit, call.emit_threadsafe)
        except asyncio.CancelledError:
            if call.expired and task.uncancel() <= base:
                raise TimeoutError() from None  # our own cancellation: the call timed out
            if task.cancelling() > base:
                raise  # the sidecar's (shutdown): not the call's to answer
            # the handler's own CancelledError: answered as the runtime answers a cancelled call
            answer = cancelled_result(call_id)
        finally:
            call.finished = True
            timer.cancel()
        if call.expired:  # the handler caught its cancellation and answered all the same
            task.uncancel()
            raise TimeoutError()
        if loop.time() >= deadline:
            # too late, as over the socket: a handler that blocked the loop past its deadline
            raise TimeoutError()
        if call.failure is not None:
            return call.failure
        return _as_received(answer, self.max_frame)

    async def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown()
