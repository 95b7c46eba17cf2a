"""The handler layer: one call of the loaded handler, from its ``call`` frame to its ``result``
frame. Shared by the runtime's socket server and the sidecar's in-process mode, so that every
handler kind, ``ctx``, and the mapping of exceptions and of unencodable output to error codes
are one implementation.

Sync handlers (and generators) run on the :class:`~.workers.HandlerThreads`; async handlers and
async generators on the caller's event loop. Frames a call produces before its result
(``partial``, ``progress``) go to the caller's ``emit`` (from the loop's thread) or
``emit_threadsafe`` (from a worker thread, or from ``ctx``), in order and before the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ai.backend.common.framing import DEFAULT_MAX_FRAME, FrameTooLarge, encode_frame

from .context import Context
from .errors import error_fields, failed_result
from .inference import InferRequest, response_payload
from .loader import HandlerKind, Invocable, LoadedHandler, classify, first_parameter_annotated
from .workers import HandlerThreads

PROTOCOL_VERSION = 1

FrameSink = Callable[[dict[str, Any]], None]


def hello_frame(handler: LoadedHandler, concurrency: int) -> dict[str, Any]:
    """The first frame a runtime says: what it serves (DESIGN.md §4.3)."""
    app = handler.app
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "handler": handler.ref,
        "kind": handler.description,
        "concurrency": concurrency,
        "models": [m.describe() for m in app.models] if app is not None else [],
        "pid": os.getpid(),
    }


def outgoing_frame(frame: dict[str, Any], max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """The encoded frame, or, when it cannot be encoded or is too large, the encoded error
    result of its call (``frame_too_large``, ``processing_error``): the caller always hears
    back."""
    try:
        return encode_frame(frame, max_frame=max_frame)
    except FrameTooLarge as e:
        return encode_frame(failed_result(frame.get("id"), "frame_too_large", str(e)))
    except (TypeError, ValueError) as e:
        message = f"the handler's output is not JSON-serializable: {e}"
        return encode_frame(failed_result(frame.get("id"), "processing_error", message))


class CallRunner:
    """Runs calls of one loaded handler (and of the models of an :class:`~.app.App`)."""

    def __init__(self, handler: LoadedHandler, threads: HandlerThreads) -> None:
        self.handler = handler
        self.threads = threads
        self._models: dict[tuple[str, str], Invocable] = {}

    def invocable_for(self, call: dict[str, Any]) -> Invocable:
        app = self.handler.app
        if app is None:
            assert self.handler.invocable is not None
            return self.handler.invocable
        model = app.resolve(call.get("model"), call.get("version"))
        key = (model.name, model.version)
        if key not in self._models:
            invocable = classify(model.handler)
            if invocable.input_type is None and not first_parameter_annotated(model.handler):
                # a model handler without a type for its input gets the request as KServe's
                invocable = dataclasses.replace(invocable, input_type=InferRequest)
            self._models[key] = invocable
        return self._models[key]

    async def run(
        self,
        call_id: str,
        call: dict[str, Any],
        emit: FrameSink,
        emit_threadsafe: FrameSink,
    ) -> dict[str, Any]:
        """The call's ``result`` frame: ``ok`` with the handler's result, or ``error`` with the
        fields of the exception it raised. Cancelling the caller abandons the call (a sync
        handler already running finishes in its thread; its result is dropped)."""
        try:
            result = await self._invoke(call_id, call, emit, emit_threadsafe)
        except Exception as e:
            return {"type": "result", "id": call_id, "status": "error", **error_fields(e)}
        return {"type": "result", "id": call_id, "status": "ok", "result": result}

    async def _invoke(
        self, call_id: str, call: dict[str, Any], emit: FrameSink, emit_threadsafe: FrameSink
    ) -> Any:
        invocable = self.invocable_for(call)
        payload = call.get("payload")
        infers = invocable.input_type is InferRequest
        if infers:
            payload = InferRequest.from_payload(payload)
        elif invocable.input_type is not None and isinstance(payload, dict):
            payload = invocable.input_type(**payload)
        args: tuple[Any, ...] = (payload,)
        if invocable.wants_context:
            args = (payload, Context(call, emit_threadsafe))
        match invocable.kind:
            case HandlerKind.ASYNC_FUNCTION:
                result = await invocable.target(*args)
            case HandlerKind.ASYNC_GENERATOR:
                result = await _drain_async_generator(call_id, invocable.target(*args), emit)
            case HandlerKind.GENERATOR:
                result = await self.threads.submit(
                    _drain_generator, call_id, invocable, args, emit_threadsafe
                )
            case HandlerKind.FUNCTION:
                result = await self.threads.submit(invocable.target, *args)
        if infers:
            return response_payload(result)
        if dataclasses.is_dataclass(result) and not isinstance(result, type):
            result = dataclasses.asdict(result)
        return result


async def _drain_async_generator(
    call_id: str, generator: AsyncIterator[Any], emit: FrameSink
) -> Any:
    last = None
    async for item in generator:
        emit({"type": "partial", "id": call_id, "data": item})
        last = item
    return last


def _drain_generator(
    call_id: str, invocable: Invocable, args: tuple[Any, ...], emit_threadsafe: FrameSink
) -> Any:
    """In a worker thread: every yield is a partial; the return value, else the last yielded
    value, is the result."""
    generator: Iterator[Any] = invocable.target(*args)
    last = None
    while True:
        try:
            item = next(generator)
        except StopIteration as stop:
            return stop.value if stop.value is not None else last
        emit_threadsafe({"type": "partial", "id": call_id, "data": item})
        last = item


def cancelled_result(call_id: str) -> dict[str, Any]:
    """The answer to a call cancelled before it finished."""
    return failed_result(call_id, "timeout", "the call was cancelled")


def new_threads(size: int) -> HandlerThreads:
    """Handler threads that hand results to the running loop."""
    return HandlerThreads(size, asyncio.get_running_loop())
