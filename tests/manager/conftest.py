from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ai.backend.manager.models.schema import oneshot


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
