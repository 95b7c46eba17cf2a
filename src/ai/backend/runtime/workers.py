"""Threads for sync handlers, cheaper than ``run_in_executor`` for short calls.

Calls are asyncio futures (no ``concurrent.futures`` bookkeeping), and finished calls reach the
event loop in batches: a worker wakes the loop only if no wake-up is pending already, so under
load one wake-up delivers many results.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any

_Job = tuple[asyncio.Future[Any], Callable[..., Any], tuple[Any, ...]]


class HandlerThreads:
    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done: collections.deque[tuple[asyncio.Future[Any], bool, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._wake_pending = False
        self._running: dict[int, asyncio.Future[Any]] = {}  # worker thread → its job's future
        self._threads = [
            threading.Thread(target=self._work, name=f"handler-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``function(*args)`` on a worker; cancelling the future abandons the result (a
        running call cannot be interrupted)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put((future, function, args))
        return future

    def abandoned(self) -> list[asyncio.Future[Any]]:
        """The futures of calls still running in a thread although their caller gave up on
        them (cancelled: the call timed out or was cancelled). A thread cannot be interrupted:
        it holds its slot until the handler returns."""
        return [future for future in list(self._running.values()) if future.cancelled()]

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, args = job
            if future.cancelled():  # abandoned while queued (a benign cross-thread read)
                continue
            me = threading.get_ident()
            self._running[me] = future
            try:
                outcome: tuple[asyncio.Future[Any], bool, Any] = (future, True, function(*args))
            except Exception as e:
                outcome = (future, False, e)
            except BaseException as e:  # e.g. SystemExit from a handler: report, keep serving
                outcome = (future, False, RuntimeError(f"handler raised {type(e).__name__}: {e}"))
            finally:
                del self._running[me]
            self._done.append(outcome)
            with self._lock:
                if self._wake_pending:
                    continue
                self._wake_pending = True
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            self._wake_pending = False
        while self._done:
            future, ok, value = self._done.popleft()
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
