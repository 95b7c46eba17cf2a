"""The fault suite (issue "A data plane you can trust"): a steady load of jobs through a 3-actor
pipeline with a fan-out — ``splitter`` → ``doubler`` (200 ms a call, so that work is in flight
when a fault strikes) → ``incrementer``, every job fanning out into three branches — while one
fault at a time is injected. After each fault every job must
reach exactly one terminal state with the right result, none may be lost, and the platform must
recover by itself.

It runs on a Redis of its own (:class:`PrivateRedis`, append-only file on) so that Redis itself
can be paused and restarted. ``tests/faults`` runs a short version; ``bench/faults.py`` a long
one. Processes killed by a fault are started again at once, as the agent would.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from ai.backend.common.dto.envelope import Envelope, Route

from .dataplane import DataPlane
from .processes import Child
from .redis_server import PrivateRedis

log = logging.getLogger(__name__)

ROUTE = ["splitter", "doubler", "incrementer"]
HANDLERS = {
    "splitter": "examples.pipeline:fan_out",
    "doubler": "examples.pipeline:double_slowly",
    "incrementer": "examples.pipeline:increment",
}
FAN_OUT = 3
CONCURRENCY = 16
CLAIM_IDLE = "2s"  # how soon a dead replica's entries are reclaimed
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def expected_result(n: int) -> dict[str, Any]:
    """What job ``n`` (payload items n, n+1, n+2; doubled, plus five) must return."""
    return {"results": [{"value": 2 * (n + i) + 5} for i in range(FAN_OUT)]}


@dataclass(frozen=True)
class LoadSettings:
    rate: float = 20.0  # jobs per second
    before: float = 2.0  # seconds of load before the fault
    after: float = 4.0  # seconds of load after it (the fault's own duration included)
    settle_timeout: float = 60.0  # after the load, how long jobs may take to end


@dataclass
class FaultReport:
    fault: str
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0
    double_terminal: int = 0
    wrong_result: int = 0
    dead_lettered: int = 0
    in_flight_at_fault: int = 0  # jobs submitted before the fault and not ended when it struck
    recovery_s: float | None = None

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.double_terminal == 0 and self.wrong_result == 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventTally:
    """Follows ``bai:events`` (also across a Redis restart) and counts each job's terminal
    events, keeping the first."""

    def __init__(self, redis: Redis, stream: str) -> None:
        self._redis = redis
        self._stream = stream
        self._last_id = "0-0"
        self.terminal_count: dict[str, int] = {}
        self.first_terminal: dict[str, dict[str, Any]] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.read(block_ms=200)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis away: try again
                log.debug("event tally: %s", e)
                await asyncio.sleep(0.1)

    async def read(self, block_ms: int | None = None) -> int:
        response: Any = await self._redis.xread(
            {self._stream: self._last_id}, count=2000, block=block_ms
        )
        read = 0
        for _stream, entries in response or ():
            for entry_id, fields in entries:
                self._last_id = entry_id.decode()
                read += 1
                event = orjson.loads(fields[b"ev"])
                if event.get("kind") in TERMINAL:
                    job_id = event["job_id"]
                    self.terminal_count[job_id] = self.terminal_count.get(job_id, 0) + 1
                    self.first_terminal.setdefault(job_id, event)
        return read

    async def catch_up(self) -> None:
        """Read every event written so far (call once the platform is quiescent)."""
        while await self.read():
            pass

    def ended(self, job_id: str) -> bool:
        return job_id in self.first_terminal


@dataclass
class LoadGenerator:
    """Publishes one job every ``1 / rate`` seconds to the splitter; a job counts as submitted
    once Redis acknowledged its envelope (a failed publish is tried again, the same envelope)."""

    redis: Redis
    stream: str
    phase: str
    rate: float
    submitted: dict[str, int] = field(default_factory=dict)  # job id → n
    roots: list[bytes] = field(default_factory=list)
    _stopping: bool = False

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self._stopping:
            job_id = f"{self.phase}-{n:06d}"
            body = Envelope(
                job_id=job_id,
                route=Route(actors=ROUTE),
                payload={"items": [n + i for i in range(FAN_OUT)]},
            ).to_json_bytes()
            while True:
                try:
                    await self.redis.xadd(self.stream, {"e": body})
                    break
                except Exception as e:  # Redis away: the same envelope again
                    log.debug("publish of %s: %s", job_id, e)
                    await asyncio.sleep(0.05)
            self.submitted[job_id] = n
            self.roots.append(body)
            n += 1
            next_at += 1 / self.rate
            await asyncio.sleep(max(next_at - time.monotonic(), 0))  # the load's pace


Fault = Callable[["FaultSuite"], Awaitable[None]]


class FaultSuite:
    """The platform under load; :meth:`run` injects one fault and reports what happened."""

    def __init__(self, plane: DataPlane, server: PrivateRedis, settings: LoadSettings) -> None:
        self.plane = plane
        self.server = server
        self.settings = settings
        self.runtimes: dict[str, Child] = {}
        self.sidecars: dict[str, Child] = {}
        self.load: LoadGenerator | None = None  # of the fault being run

    @property
    def redis(self) -> Redis:
        return self.plane.redis

    def spec(self, actor: str) -> dict[str, Any]:
        return {"name": actor, "handler": HANDLERS[actor], "concurrency": CONCURRENCY}

    async def start(self) -> None:
        for name in ("happy-end", "error-end"):
            await self.start_sidecar(name)
        for actor in ROUTE:
            await self.start_runtime(actor)
            await self.start_sidecar(actor)

    async def start_runtime(self, actor: str) -> None:
        """The actor's runtime process (none when the plane runs its handlers in-process)."""
        if self.plane.execution == "inprocess":
            return
        self.runtimes[actor] = await asyncio.to_thread(
            self.plane.start_runtime, actor, HANDLERS[actor], "--concurrency", str(CONCURRENCY)
        )

    async def start_sidecar(self, actor: str) -> None:
        """Start (or start again, with the same consumer name) the actor's sidecar."""
        spec = self.spec(actor) if actor in HANDLERS else None
        self.sidecars[actor] = await self.plane.start_sidecar(
            actor, spec=spec, sidecar={"claim_idle": CLAIM_IDLE}, consumer=f"{actor}-replica"
        )

    async def dead_letter_count(self) -> int:
        total = 0
        for actor in [*ROUTE, "happy-end", "error-end"]:
            total += await self.redis.xlen(self.plane.keys.dead_letters(actor))
        return total

    async def run(self, name: str, fault: Fault) -> FaultReport:
        s = self.settings
        tally = EventTally(self.redis, self.plane.keys.events)
        tag = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        load = LoadGenerator(self.redis, self.plane.keys.actor_stream(ROUTE[0]), tag, s.rate)
        self.load = load
        dead_before = await self.dead_letter_count()
        followers = [asyncio.create_task(tally.run()), asyncio.create_task(load.run())]
        report = FaultReport(name)
        try:
            await asyncio.sleep(s.before)  # steady load before the fault
            report.in_flight_at_fault = sum(not tally.ended(job) for job in load.submitted)
            injected_at = time.monotonic()
            await fault(self)
            recovery = asyncio.create_task(
                _recovery(tally, load, list(load.submitted), injected_at)
            )
            await asyncio.sleep(max(injected_at + s.after - time.monotonic(), 0))
            load.stop()
            await followers[1]
            deadline = time.monotonic() + s.settle_timeout
            while time.monotonic() < deadline and not all(map(tally.ended, load.submitted)):
                await asyncio.sleep(0.05)
            if all(map(tally.ended, load.submitted)):
                report.recovery_s = await asyncio.wait_for(recovery, timeout=5)
            recovery.cancel()
            await self.plane.wait_quiescent(timeout=max(deadline - time.monotonic(), 5))
        finally:
            load.stop()
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
        await tally.catch_up()
        report.submitted = len(load.submitted)
        for job_id, n in load.submitted.items():
            event = tally.first_terminal.get(job_id)
            if event is None:
                report.lost += 1
                continue
            if tally.terminal_count[job_id] > 1:
                report.double_terminal += 1
            if event["kind"] == "succeeded":
                report.succeeded += 1
                if event.get("result") != expected_result(n):
                    report.wrong_result += 1
            else:
                report.failed += 1
        report.dead_lettered = await self.dead_letter_count() - dead_before
        return report


async def _recovery(
    tally: EventTally, load: LoadGenerator, before: list[str], since: float
) -> float:
    """Seconds from the fault (injected at ``since``) until the platform serves again: every
    job submitted until the fault was done (``before``), and the first one submitted after it,
    have ended."""
    while True:
        after = [job for job in load.submitted if job not in before][:1]
        if after and all(map(tally.ended, [*before, *after])):
            return round(time.monotonic() - since, 2)
        await asyncio.sleep(0.02)


# --- the faults ------------------------------------------------------------------------------


async def kill_runtime(suite: FaultSuite) -> None:
    """kill -9 the doubler's runtime, then start it again (as its agent would)."""
    child = suite.runtimes["doubler"]
    child.kill()
    await asyncio.to_thread(child.wait, 10)
    await suite.start_runtime("doubler")


async def kill_sidecar(suite: FaultSuite) -> None:
    """kill -9 the doubler's sidecar, then start it again with the same consumer name."""
    child = suite.sidecars["doubler"]
    child.kill()
    await asyncio.to_thread(child.wait, 10)
    await suite.start_sidecar("doubler")


async def kill_crew(suite: FaultSuite) -> None:
    """kill -9 ``happy-end``, then start it again."""
    child = suite.sidecars["happy-end"]
    child.kill()
    await asyncio.to_thread(child.wait, 10)
    await suite.start_sidecar("happy-end")


REDIS_PAUSE = 5.0
REDIS_DOWN = 2.0


async def pause_redis(suite: FaultSuite) -> None:
    """Every client of Redis waits 5 s (CLIENT PAUSE)."""
    await asyncio.to_thread(suite.server.pause, REDIS_PAUSE)


async def restart_redis(suite: FaultSuite) -> None:
    """Stop Redis (gracefully: the append-only file is synced), keep it down 2 s, start it."""
    await asyncio.to_thread(suite.server.stop)
    await asyncio.sleep(REDIS_DOWN)  # the outage itself
    await asyncio.to_thread(suite.server.start)


DUPLICATED_ROOTS = 10
DUPLICATED_ENTRIES = 20


async def duplicates(suite: FaultSuite) -> None:
    """The same entries published twice: the last 10 jobs' first envelopes, and the newest 20
    entries of every stream of the pipeline and the crew."""
    keys = suite.plane.keys
    assert suite.load is not None
    for body in suite.load.roots[-DUPLICATED_ROOTS:]:
        await suite.redis.xadd(keys.actor_stream(ROUTE[0]), {"e": body})
    for actor in [*ROUTE[1:], "happy-end", "error-end"]:
        stream = keys.actor_stream(actor)
        newest: Any = await suite.redis.xrevrange(stream, count=DUPLICATED_ENTRIES)
        for _entry_id, fields in reversed(newest):
            await suite.redis.xadd(stream, {"e": fields[b"e"]})


def faults_for(execution: str) -> list[str]:
    """The faults that exist in an execution mode (in-process, there is no runtime to kill)."""
    return [name for name in FAULTS if not (execution == "inprocess" and "runtime" in name)]


FAULTS: dict[str, Fault] = {
    "kill -9 runtime": kill_runtime,
    "kill -9 sidecar": kill_sidecar,
    "kill -9 crew": kill_crew,
    "pause Redis 5 s": pause_redis,
    "restart Redis": restart_redis,
    "duplicates": duplicates,
}
