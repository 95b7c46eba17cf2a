"""Fixtures of the gateway's tests. Modules that share one stack among their tests
(:func:`ai.backend.testutils.gateway.shared_stack`) define a module-scoped ``stack`` fixture;
``shared_cluster`` and ``gateway`` are that stack as a test reaches it.

Tests that kill, restart or reconfigure a process, or that assert on state every test of the
stack changes (a database's job counts, a process's metrics), keep the ``cluster`` fixture of
tests/conftest.py: a stack of their own; ``lone_gateway`` is one for tests that need no
manager and no actor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai.backend.testutils.control_plane import Cluster
from ai.backend.testutils.gateway import (
    RunningGateway,
    SharedStack,
    gateway_env,
    start_gateway,
    write_tools,
)
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.services import free_port


@pytest.fixture
async def shared_cluster(stack: SharedStack[Any]) -> AsyncIterator[Cluster]:
    """The module's shared cluster, with clients of this test's event loop."""
    async with stack.attached() as cluster:
        yield cluster


@pytest.fixture
def gateway(stack: SharedStack[RunningGateway], shared_cluster: Cluster) -> RunningGateway:
    """The gateway that the module's ``stack`` started (what its build returned)."""
    return stack.built.with_session(shared_cluster.manager.session)


@pytest.fixture
async def lone_gateway(
    database_url: str, redis_client: Redis, key_prefix: str, processes: ProcessGroup, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    """A gateway with the test tools, alone on the test's database and Redis prefix: no manager,
    no actor (a job it creates stays pending). Stopped before its Redis keys are deleted
    (``redis_client``) and its database dropped."""
    env = gateway_env(
        db_url=database_url,
        prefix=key_prefix,
        port=free_port(),
        tools=write_tools(tmp_path / "tools.yaml"),
    )
    async with aiohttp.ClientSession() as session:
        yield await start_gateway(processes, "gateway", env, session)


@pytest.fixture
async def sessions(db_engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test's own database (the repositories' tests)."""
    yield async_sessionmaker(db_engine, expire_on_commit=False)
