"""Health of the stack's services: one probe of ``/health``, and the wait for a starting
service (backoff 0.5 s → 10 s, a deadline, an early end when its process exits)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from ai.backend.common.aio import Backoff

from .errors import ServiceFailed
from .processes import StartedProcess, exit_description, is_running, owns_listener, wait_exit
from .record import ServiceKind, ServiceRecord

PROBE_TIMEOUT: Final = 3.0
FIRST_WAIT: Final = 0.5
LONGEST_WAIT: Final = 10.0


@dataclass(frozen=True)
class HealthAnswer:
    status: int | None  # None: nothing answered
    body: Any

    def describe(self) -> str:
        if self.status is None:
            return "nothing answers"
        return f"HTTP {self.status} {self.body!r}"[:300]


async def probe(session: aiohttp.ClientSession, url: str) -> HealthAnswer:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as answer:
            try:
                body = await answer.json(content_type=None)
            except ValueError:
                body = await answer.text()
            return HealthAnswer(answer.status, body)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return HealthAnswer(None, None)


def is_healthy(kind: ServiceKind, answer: HealthAnswer) -> bool:
    """200 from ``/health``; an agent also has had its first heartbeat answered (its keypair
    is accepted)."""
    if answer.status != 200:
        return False
    if kind is ServiceKind.AGENT:
        return isinstance(answer.body, dict) and answer.body.get("manager_reachable") is True
    return True


async def wait_until_healthy(
    session: aiohttp.ClientSession,
    service: ServiceRecord,
    *,
    timeout: float,
    started: StartedProcess | None = None,
) -> None:
    """Probe the service's ``/health`` until it is healthy; :class:`ServiceFailed` naming it,
    with the tail of its log, when its process exits or ``timeout`` passes. ``started``: the
    process when this ``dev up`` started it (its exit status is then known)."""
    deadline = time.monotonic() + timeout
    backoff = Backoff(FIRST_WAIT, LONGEST_WAIT)
    while True:
        answer = await probe(session, service.health_url)
        if is_healthy(service.kind, answer) and owns_listener(service.process, service.port):
            return
        gone: str | None
        if started is not None and started.popen.poll() is not None:
            gone = exit_description(started)
        else:
            gone = None if is_running(service.process) else "exited"
        if gone is not None:
            raise ServiceFailed(f"{service.name} {gone} before it became healthy", log=service.log)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if answer.status is not None and not owns_listener(service.process, service.port):
                problem = f"another program answers on its port {service.port}"
            else:
                problem = f"{service.health_url}: {answer.describe()}"
            raise ServiceFailed(
                f"{service.name} is not healthy after {timeout:g} s ({problem})",
                log=service.log,
            )
        # the backoff, cut short when the process exits
        await wait_exit(service.process.pid, min(backoff.next_delay(), remaining))
