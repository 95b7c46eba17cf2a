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
from ai.backend.testutils.dataplane import EXECUTION_MODES, DataPlane
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.services import redis_url

SEPARATE_RUNTIME = "separate_runtime"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{SEPARATE_RUNTIME}: the test is about the runtime process (default mode only)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``separate_runtime`` run only with ``execution: runtime``."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("execution") if callspec is not None else None
        if mode == "inprocess" and item.get_closest_marker(SEPARATE_RUNTIME):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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


@pytest.fixture(params=EXECUTION_MODES)
def execution(request: pytest.FixtureRequest) -> str:
    """Every data-plane test runs with the handler in a runtime process and in-process."""
    mode: str = request.param
    return mode


@pytest.fixture
async def plane(
    redis_client: Redis, processes: ProcessGroup, key_prefix: str, tmp_path: Path, execution: str
) -> DataPlane:
    """A data plane with its crew (happy-end, error-end) running (Redis set up before the
    processes, so its keys are deleted after they stop)."""
    data_plane = DataPlane(
        processes, redis_client, RedisKeys(key_prefix), tmp_path, execution=execution
    )
    await data_plane.start_crew()
    return data_plane
