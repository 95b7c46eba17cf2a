from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import examples.failures  # noqa: F401  (handlers the children load)
import examples.pipeline  # noqa: F401
import pytest
from redis.asyncio import Redis

import ai.backend.runtime.cli  # noqa: F401  (the children run `backend.ai runtime run`)
import ai.backend.sidecar.cli  # noqa: F401  (and `backend.ai sidecar run`)
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.testutils.dataplane import DataPlane
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.services import redis_url


@pytest.fixture
def processes(tmp_path: Path, key_prefix: str, redis_client: Redis) -> Iterator[ProcessGroup]:
    """The test's processes; stopped before ``redis_client`` deletes the test's keys."""
    group = ProcessGroup(
        tmp_path,
        env={
            "HOME": "/nonexistent-home",
            "BACKEND_REDIS__URL": redis_url(),
            "BACKEND_REDIS__PREFIX": key_prefix,
            "BACKEND_LOGGING__LEVEL": "INFO",
        },
    )
    yield group
    group.stop_all()


@pytest.fixture
async def plane(
    processes: ProcessGroup, redis_client: Redis, key_prefix: str, tmp_path: Path
) -> DataPlane:
    """A data plane with its crew (happy-end, error-end) running."""
    data_plane = DataPlane(processes, redis_client, RedisKeys(key_prefix), tmp_path)
    await data_plane.start_crew()
    return data_plane
