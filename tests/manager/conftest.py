from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.manager.models.schema import oneshot
from ai.backend.testutils.control_plane import (
    Cluster,
    RunningManager,
    create_keypair,
    kill_processes_mentioning,
    manager_env,
    start_manager,
)
from ai.backend.testutils.dataplane import DataPlane
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.services import free_port, redis_url


@pytest.fixture
async def database_url(missing_database_url: str) -> AsyncIterator[str]:
    """A database of this test alone, migrated to head (``mgr schema oneshot``)."""
    await oneshot(missing_database_url)
    yield missing_database_url


@pytest.fixture
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=4, max_overflow=4)
    yield engine
    await engine.dispose()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


@pytest.fixture
async def manager(
    processes: ProcessGroup, database_url: str, key_prefix: str, redis_client: Redis
) -> AsyncIterator[RunningManager]:
    """A manager process on a free port (control loop every 0.2 s) and an admin keypair;
    the test's Redis keys are deleted afterwards (``redis_client``)."""
    port = free_port()
    env = manager_env(db_url=database_url, redis_url=redis_url(), prefix=key_prefix, port=port)
    child = await start_manager(processes, "manager", env)
    admin = create_keypair(database_url, "--admin")
    async with aiohttp.ClientSession() as session:
        yield RunningManager(
            child, f"http://127.0.0.1:{port}", database_url, key_prefix, admin, session
        )


@pytest.fixture
async def cluster(
    manager: RunningManager, processes: ProcessGroup, tmp_path: Path, redis_client: Redis
) -> AsyncIterator[Cluster]:
    """The manager plus a keypair for agents; ``add_agent`` starts agent processes, which are
    stopped with SIGTERM at the end (their replicas too: the test's state dirs are swept)."""
    keys = create_keypair(manager.database_url, "--role", "agent")
    plane = DataPlane(processes, redis_client, RedisKeys(manager.prefix), tmp_path)
    cluster = Cluster(manager, plane, processes, tmp_path, keys, {})
    yield cluster
    for agent_id in list(cluster.agents):
        cluster.stop_agent_and_replicas(agent_id)
    for state_dir in tmp_path.glob("state-*"):
        kill_processes_mentioning(str(state_dir))
