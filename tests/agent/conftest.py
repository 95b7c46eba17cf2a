from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import examples.pipeline  # noqa: F401  (handlers the replicas load)
import examples.probes  # noqa: F401
import pytest
from redis.asyncio import Redis

import ai.backend.agent.cli  # noqa: F401  (a test runs `backend.ai ag start-server`)
import ai.backend.cli.__main__  # noqa: F401  (the sidecars run `python -m ai.backend.cli`)
import ai.backend.runtime.__main__  # noqa: F401  (and the runtimes `-m ai.backend.runtime`)
import ai.backend.sidecar.cli  # noqa: F401
from ai.backend.agent.services.launch import LaunchSettings
from ai.backend.agent.services.reconciler import Reconciler
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.testutils.agent import FAST_SUPERVISION, ReconcilerFactory
from ai.backend.testutils.dataplane import DataPlane
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.services import redis_url
from ai.backend.testutils.spawn import child_environment


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent-state"


@pytest.fixture
async def make_reconciler(
    state_dir: Path, key_prefix: str, redis_client: Redis
) -> AsyncIterator[ReconcilerFactory]:
    """Reconcilers on one state dir and the test's Redis prefix; every replica they still
    supervise is drained afterwards (before the test's Redis keys are deleted)."""
    made: list[Reconciler] = []

    def make() -> Reconciler:
        reconciler = Reconciler(
            state_dir=state_dir,
            supervision=FAST_SUPERVISION,
            launch=LaunchSettings(
                redis_url=redis_url(),
                redis_prefix=key_prefix,
                claim_idle=1.0,
                base_env=child_environment({"HOME": "/nonexistent-home"}),
            ),
        )
        made.append(reconciler)
        return reconciler

    yield make
    for reconciler in made:
        await reconciler.stop_all()


@pytest.fixture
async def reconciler(make_reconciler: ReconcilerFactory) -> Reconciler:
    return make_reconciler()


@pytest.fixture
def plane(tmp_path: Path, redis_client: Redis, key_prefix: str) -> DataPlane:
    """Publishing envelopes and reading job events (the processes are the agent's)."""
    return DataPlane(ProcessGroup(tmp_path), redis_client, RedisKeys(key_prefix), tmp_path)
