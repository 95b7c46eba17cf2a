"""Handlers that fail, for retry, timeout and error-path tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ai.backend.runtime import Context


class NotRetryableError(ValueError):
    """A subclass: ``non_retryable: [ValueError]`` covers it through the class's MRO."""


def fail_value_error(payload: Any) -> Any:
    raise ValueError(f"bad value: {payload!r}")


def fail_not_retryable(payload: Any) -> Any:
    raise NotRetryableError("never retried")


def fail_runtime_error(payload: Any) -> Any:
    raise RuntimeError("always fails")


def flaky(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Fails at the first attempt, succeeds at the next."""
    if ctx.attempt == 1:
        raise ConnectionResetError("transient failure at attempt 1")
    return {**payload, "attempt": ctx.attempt}


def slow(payload: dict[str, Any]) -> dict[str, Any]:
    """Sleeps ``payload["seconds"]`` in its worker thread."""
    time.sleep(float(payload["seconds"]))
    return payload


def stuck(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Says it started (progress 0), then sleeps ``payload["seconds"]`` in its worker thread,
    ignoring any timeout or cancel: a sync handler stuck in a call."""
    ctx.progress(0, message="started")
    time.sleep(float(payload["seconds"]))
    return payload


async def async_slow(payload: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(float(payload["seconds"]))
    return payload


def oom(payload: Any) -> Any:
    raise MemoryError("simulated host OOM")


def cuda_oom(payload: Any) -> Any:
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


def not_json(payload: Any) -> Any:
    return {"a set": {1, 2, 3}}


def grow(payload: dict[str, Any]) -> dict[str, Any]:
    """An answer of ``payload["size"]`` bytes from a small call (above a small ``max_frame``)."""
    return {"blob": "x" * payload["size"]}


async def blocks_the_loop(payload: dict[str, Any]) -> dict[str, Any]:
    """An async handler that blocks its event loop (a sync call inside ``async def``)."""
    time.sleep(float(payload["seconds"]))
    return payload


async def ignores_cancellation(payload: dict[str, Any]) -> dict[str, Any]:
    """An async handler that catches its cancellation and answers all the same."""
    try:
        await asyncio.sleep(float(payload["seconds"]))
    except asyncio.CancelledError:
        return {"answered": "after its cancellation"}
    return payload


async def raises_cancelled(payload: Any) -> Any:
    """An async handler whose own work was cancelled under it (a library cancelled a task)."""
    raise asyncio.CancelledError()
