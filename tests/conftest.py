from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ai.backend.common.db.engine import create_database_if_missing, drop_database
from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.common.transport.redis_streams import RedisStreamsTransport
from ai.backend.manager.models.schema import oneshot
from ai.backend.testutils.control_plane import (
    Cluster,
    RunningManager,
    insert_keypair,
    kill_processes_mentioning,
    manager_env,
    start_manager,
)
from ai.backend.testutils.dataplane import DataPlane
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.services import free_port, postgres_url, redis_url, unique_name


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix of this test alone."""
    return unique_name("test:bai:") + ":"


@pytest.fixture
async def redis_client(key_prefix: str) -> AsyncIterator[Redis]:
    """A client of the local Redis; every key under ``key_prefix`` is deleted afterwards."""
    client = Redis.from_url(redis_url(), decode_responses=False)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{key_prefix}*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def transport(redis_client: Redis, key_prefix: str) -> RedisStreamsTransport:
    return RedisStreamsTransport(redis_client, prefix=key_prefix)


@pytest.fixture
async def empty_database_url() -> AsyncIterator[str]:
    """The URL of a database of this test alone, created empty and dropped afterwards."""
    url = postgres_url(unique_name("test_bai_"))
    await create_database_if_missing(url)
    yield url
    await drop_database(url)


@pytest.fixture
async def missing_database_url() -> AsyncIterator[str]:
    """The URL of a database that does not exist yet; dropped afterwards if a test created it."""
    url = postgres_url(unique_name("test_bai_"))
    yield url
    await drop_database(url)


# The control plane (manager, agents) as the manager's and the gateway's tests use it.


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
def manager_extra_env() -> dict[str, str]:
    """Settings the ``manager`` fixture adds to its environment (a test module overrides it)."""
    return {}


@pytest.fixture
async def manager(
    redis_client: Redis,
    database_url: str,
    processes: ProcessGroup,
    key_prefix: str,
    manager_extra_env: dict[str, str],
) -> AsyncIterator[RunningManager]:
    """A manager process on a free port (control loop every 0.2 s) and an admin keypair;
    the test's Redis keys are deleted afterwards (``redis_client``). The Redis client and the
    database come first, so they are torn down after the processes (a service still running
    could otherwise write keys again after their deletion)."""
    port = free_port()
    env = manager_env(
        db_url=database_url,
        redis_url=redis_url(),
        prefix=key_prefix,
        port=port,
        extra=manager_extra_env,
    )
    child = await start_manager(processes, "manager", env)
    admin = await insert_keypair(database_url, "admin")
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
    keys = await insert_keypair(manager.database_url, "agent")
    plane = DataPlane(processes, redis_client, RedisKeys(manager.prefix), tmp_path)
    cluster = Cluster(manager, plane, processes, tmp_path, keys, {})
    yield cluster
    for agent_id in list(cluster.agents):
        cluster.stop_agent_and_replicas(agent_id)
    for state_dir in tmp_path.glob("state-*"):
        kill_processes_mentioning(str(state_dir))
