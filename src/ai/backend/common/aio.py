"""Small asyncio helpers shared by the processes (stdlib only: the runtime uses them too)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
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


class Stopped(Exception):
    """The stop event was set before the awaited work finished."""


async def unless_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> T:
    """The result of ``awaitable``, or :class:`Stopped` (and ``awaitable`` cancelled) if
    ``stop`` is set first. An exception of ``awaitable`` propagates."""
    work = asyncio.ensure_future(awaitable)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        stopper.cancel()
    if not work.done():
        work.cancel()
        raise Stopped()
    return work.result()


GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Keep the cyclic garbage collector off a data-plane process's hot path: what start-up
    loaded is frozen out of its scans, and the young generation is collected every 20,000
    allocations instead of 700 (an envelope allocates dozens of objects, nearly all freed by
    reference counting). Measured: a fifth of the sidecar's CPU time per envelope."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


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
    that failed; if it raises, every item of the batch fails with that exception, unless
    ``isolate_when(exception)`` is true: then each item is run again alone, so that one bad item
    (a permanent error) does not fail the others.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[Sequence[R | Exception]]],
        *,
        isolate_when: Callable[[Exception], bool] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._isolate_when = isolate_when
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                await asyncio.sleep(0)  # let the rest of this loop turn join the batch
                batch, self._waiting = self._waiting, []
                results = await self._results([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
                for (_, future), result in zip(batch, results):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        except Exception as e:
            self._fail_all(batch, e)  # told to every submitter: nothing left to raise
        except BaseException:
            self._fail_all(batch, RuntimeError("the batch was cancelled"))
            raise
        finally:
            self._flusher = None

    def _fail_all(self, batch: list[tuple[T, asyncio.Future[R]]], failure: Exception) -> None:
        """No submitter may wait forever: whatever stopped the flush fails what it held."""
        for _, future in [*batch, *self._waiting]:
            if not future.done():
                future.set_exception(failure)
        self._waiting = []

    async def _results(self, items: list[T]) -> Sequence[R | Exception]:
        try:
            return await self._run_batch(items)
        except Exception as e:
            if len(items) == 1 or self._isolate_when is None or not self._isolate_when(e):
                return [e] * len(items)
        return [await self._alone(item) for item in items]

    async def _alone(self, item: T) -> R | Exception:
        try:
            [result] = await self._run_batch([item])
        except Exception as e:
            return e
        return result


BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0


class Backoff:
    """Waits ``BACKOFF_MIN`` · 2ⁿ seconds (capped at ``BACKOFF_MAX``, ±20 % jitter so that
    replicas do not retry in step) before the n-th retry."""

    def __init__(self, minimum: float = BACKOFF_MIN, maximum: float = BACKOFF_MAX) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.attempts = 0

    def next_delay(self) -> float:
        delay = min(self.minimum * 2**self.attempts, self.maximum)
        self.attempts += 1
        return delay * random.uniform(0.8, 1.2)

    async def wait(self) -> None:
        await asyncio.sleep(self.next_delay())  # a retry timer, not synchronisation

    def reset(self) -> None:
        self.attempts = 0
