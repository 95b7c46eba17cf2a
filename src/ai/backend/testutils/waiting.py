"""Waiting for a condition in async tests: poll it, never sleep a fixed time and hope."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .processes import Child


async def wait_until(
    condition: Callable[[], Any | Awaitable[Any]],
    *,
    what: str,
    timeout: float = 20,
    watch: Sequence[Child] = (),
    interval: float = 0.05,
) -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy, and return that;
    fail early when a watched child exits, and after ``timeout`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        for child in watch:
            if not child.alive():
                raise AssertionError(
                    f"{child.name} exited while waiting for {what}:\n{child.log()}"
                )
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)
