"""The fault suite, short: each fault under a steady load of fan-out jobs on a Redis of the
test's own; every job ends exactly once, right, and the platform recovers by itself within 60 s.
``./py bench/faults.py`` runs the long version."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import examples.pipeline  # noqa: F401  (handlers the children load)
import pytest
from redis.asyncio import Redis

import ai.backend.runtime.cli  # noqa: F401  (the children run `backend.ai runtime run`)
import ai.backend.sidecar.cli  # noqa: F401  (and `backend.ai sidecar run`)
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.testutils.dataplane import EXECUTION_MODES, DataPlane
from ai.backend.testutils.fault_suite import FAULTS, FaultSuite, LoadSettings, faults_for
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.redis_server import PrivateRedis

PREFIX = "faults:"
SHORT = LoadSettings(rate=15, before=1.5, after=6.0, settle_timeout=60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis_server = PrivateRedis(tmp_path / "redis")
    redis_server.start()
    yield redis_server
    redis_server.stop()


@pytest.fixture
async def suite(tmp_path: Path, server: PrivateRedis, execution: str) -> AsyncIterator[FaultSuite]:
    processes = ProcessGroup(
        tmp_path,
        env={
            "HOME": "/nonexistent-home",
            "BACKEND_REDIS__URL": server.url,
            "BACKEND_REDIS__PREFIX": PREFIX,
            "BACKEND_LOGGING__LEVEL": "INFO",
        },
    )
    redis = Redis.from_url(server.url, decode_responses=False)
    plane = DataPlane(processes, redis, RedisKeys(PREFIX), tmp_path, execution=execution)
    fault_suite = FaultSuite(plane, server, SHORT)
    try:
        await fault_suite.start()
        yield fault_suite
    finally:
        processes.stop_all()
        await redis.aclose()


@pytest.mark.parametrize(
    ("execution", "fault"),
    [(mode, fault) for mode in EXECUTION_MODES for fault in faults_for(mode)],
)
async def test_every_job_ends_exactly_once_through_the_fault(
    suite: FaultSuite, execution: str, fault: str
) -> None:
    report = await suite.run(fault, FAULTS[fault])
    summary = report.as_dict()
    assert report.submitted >= 60, summary
    assert report.in_flight_at_fault > 0, summary  # the fault struck work in flight
    assert (report.lost, report.double_terminal, report.wrong_result) == (0, 0, 0), summary
    assert report.failed == 0, summary
    assert report.succeeded == report.submitted, summary
    assert report.dead_lettered == 0, summary
    assert report.recovery_s is not None and report.recovery_s < 60, summary
