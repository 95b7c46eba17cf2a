"""Helpers of bench/gateway.py: a closed-loop HTTP load, CPU time from /proc, percentiles and
medians."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# --- measuring -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += parents.get(current, [])
    return found


def cpu_of(groups: Mapping[str, Iterable[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def percentiles(values_ms: list[float], points: Iterable[int] = (50, 90, 99)) -> dict[str, float]:
    if len(values_ms) < 2:
        return {f"p{p}": round(values_ms[0], 3) if values_ms else float("nan") for p in points}
    cuts = statistics.quantiles(values_ms, n=100, method="inclusive")
    return {f"p{p}": round(cuts[p - 1], 3) for p in points}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each number's median over the runs (nested dictionaries key by key; other values from
    the first run)."""
    merged: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [run.get(key) for run in runs]
        if isinstance(value, dict) and all(isinstance(v, dict) for v in values):
            merged[key] = median_of(values)  # type: ignore[arg-type]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            numbers = [v for v in values if isinstance(v, int | float)]
            merged[key] = round(statistics.median(numbers), 3)
        else:
            merged[key] = value
    return merged


# --- load ------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int = 0  # answered as expected
    errors: int = 0
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str | None = None

    def record_error(self, text: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = text[:500]


async def closed_loop(
    session: aiohttp.ClientSession,
    url: str,
    body: Callable[[int], bytes],
    *,
    headers: Mapping[str, str],
    concurrency: int,
    duration: float | None = None,
    count: int | None = None,
    check: Callable[[int, int, bytes], bool] = lambda i, status, data: status == 200,
) -> LoadResult:
    """``concurrency`` workers POST ``body(i)`` back to back (each waits for its answer) until
    ``count`` requests were sent or ``duration`` seconds passed; ``check(i, status, data)``
    says whether an answer is the expected one."""
    result = LoadResult()
    next_index = 0
    deadline = None if duration is None else time.perf_counter() + duration

    async def worker() -> None:
        nonlocal next_index
        while True:
            if count is not None and next_index >= count:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            i = next_index
            next_index += 1
            data = body(i)
            sent = time.perf_counter()
            try:
                async with session.post(url, data=data, headers=headers) as response:
                    answer = await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                result.record_error(f"{type(e).__name__}: {e}")
                continue
            if check(i, status, answer):
                result.requests += 1
                result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            else:
                result.record_error(f"{status}: {answer[:300]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


def client_session(concurrency: int) -> aiohttp.ClientSession:
    """Keep-alive connections, at most ``concurrency`` of them."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, force_close=False),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def wait_http_ok(url: str, *, timeout: float, alive: Callable[[], bool]) -> bool:
    """Poll ``url`` until it answers 200; ``False`` after ``timeout`` s or when the server
    process is gone."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and alive():
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    return False
