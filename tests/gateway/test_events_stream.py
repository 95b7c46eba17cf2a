"""The gateways' reading of ``bai:events`` against a real Redis: a batch's acknowledgement travels
with the next read, and one Redis refuses is handed back to be sent again, not dropped."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.common.transport.redis_streams import EVENT_FIELD
from ai.backend.gateway.clients.events_stream import GROUP, EventsStreamClient
from ai.backend.testutils.services import redis_url


@pytest.fixture
async def no_ack_redis(key_prefix: str) -> AsyncIterator[Redis]:
    """A client of a Redis user that may do anything to the test's keys but XACK."""
    user = f"test-no-ack-{uuid.uuid4().hex[:8]}"
    admin = Redis.from_url(redis_url())
    await admin.execute_command(
        "ACL", "SETUSER", user, "on", "nopass", f"~{key_prefix}*", "&*", "+@all", "-xack"
    )
    client = Redis.from_url(redis_url(), username=user, password="")
    try:
        yield client
    finally:
        await client.aclose()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()


async def _add(redis: Redis, stream: str) -> str:
    entry_id = await redis.xadd(stream, {EVENT_FIELD: b"{}"})
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


async def _pending(redis: Redis, stream: str) -> int:
    summary = await redis.xpending(stream, GROUP)
    return int(summary["pending"])


async def test_an_acknowledgement_goes_with_the_next_read(
    redis_client: Redis, key_prefix: str
) -> None:
    stream = EventsStreamClient(redis_client, RedisKeys(key_prefix), "gw-1")
    await stream.ensure_group()
    first = await _add(redis_client, stream.stream)
    entries, unacked = await stream.read(count=10, block=None)
    assert ([e.entry_id for e in entries], unacked) == ([first], [])
    assert await _pending(redis_client, stream.stream) == 1  # read, applied, not yet acknowledged
    entries, unacked = await stream.read(count=10, block=0.01, ack=[first])
    assert (entries, unacked) == ([], [])
    assert await _pending(redis_client, stream.stream) == 0


async def test_an_acknowledgement_redis_refuses_is_handed_back_with_the_new_entries(
    redis_client: Redis, no_ack_redis: Redis, key_prefix: str
) -> None:
    keys = RedisKeys(key_prefix)
    refused = EventsStreamClient(no_ack_redis, keys, "gw-1")
    await refused.ensure_group()
    first = await _add(redis_client, refused.stream)
    entries, _ = await refused.read(count=10, block=None)
    assert [e.entry_id for e in entries] == [first]
    second = await _add(redis_client, refused.stream)
    entries, unacked = await refused.read(count=10, block=None, ack=[first], announce=b"{}")
    # the new entry is read all the same; the refused acknowledgement comes back to be resent
    assert ([e.entry_id for e in entries], unacked) == ([second], [first])
    assert await _pending(redis_client, refused.stream) == 2
    allowed = EventsStreamClient(redis_client, keys, "gw-1")
    assert await allowed.read(count=10, block=0.01, ack=[*unacked, second]) == ([], [])
    assert await _pending(redis_client, refused.stream) == 0
