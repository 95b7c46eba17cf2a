"""Small asyncio helpers shared by the processes (stdlib only: the runtime uses them too)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def cancel_and_wait(task: asyncio.Task[object] | None) -> None:
    """Cancel a background task and wait until it has finished unwinding."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def new_runner() -> asyncio.Runner:
    """An event-loop runner on uvloop when it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


class MicroBatcher(Generic[T, R]):
    """Items submitted in the same event-loop turn are handled by one call of ``run_batch``
    (e.g. one Redis round trip for many messages); each submitter gets its own result.

    ``run_batch`` returns one result per item, in order, or an exception instance for an item
    that failed; if it raises, every item of the batch fails with that exception.
    """

    def __init__(self, run_batch: Callable[[list[T]], Awaitable[Sequence[R | Exception]]]) -> None:
        self._run_batch = run_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._flushing = False

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._flushing:
            self._flushing = True
            asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(0)  # let the rest of this loop turn join the batch
                batch, self._waiting = self._waiting, []
                results: Sequence[R | Exception]
                try:
                    results = await self._run_batch([item for item, _ in batch])
                except Exception as e:
                    results = [e] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flushing = False
