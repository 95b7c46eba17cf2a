from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ai.backend.common.db.engine import create_database_if_missing, drop_database
from ai.backend.common.transport.redis_streams import RedisStreamsTransport
from ai.backend.testutils.services import postgres_url, redis_url, unique_name


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
