"""Legacy MCP sessions in Redis: their lifetime, and the in-flight calls that
``notifications/cancelled`` finds (before and after a call's job exists)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from ai.backend.gateway.services.mcp_sessions import Attached, McpSessionService


@pytest.fixture
def sessions(redis_client: Redis, key_prefix: str) -> McpSessionService:
    return McpSessionService(redis_client, prefix=key_prefix, ttl=60)


async def test_a_session_is_found_until_it_is_deleted(
    sessions: McpSessionService, redis_client: Redis, key_prefix: str
) -> None:
    session = await sessions.create(protocol_version="2025-11-25", owner="AK1")
    found = await sessions.get(session.id)
    assert found is not None
    assert (found.protocol_version, found.owner) == ("2025-11-25", "AK1")
    assert 0 < await redis_client.pttl(f"{key_prefix}mcp:session:{session.id}") <= 60_000
    assert await sessions.delete(session.id) is True
    assert await sessions.get(session.id) is None
    assert await sessions.delete(session.id) is False


async def test_ids_that_this_service_cannot_have_minted_are_unknown(
    sessions: McpSessionService,
) -> None:
    assert await sessions.get("0" * 32) is None
    assert await sessions.get("not-a-session-id") is None
    assert await sessions.get("*") is None


async def test_cancelling_a_started_call_names_its_job(sessions: McpSessionService) -> None:
    session = await sessions.create(protocol_version="2025-11-25", owner=None)
    await sessions.begin_request(session.id, 0)
    assert await sessions.attach_job(session.id, 0, "job-1") is Attached.ATTACHED
    assert await sessions.cancel_request(session.id, "0") is None  # "0" is not 0
    assert await sessions.cancel_request(session.id, 0) == "job-1"


async def test_a_call_cancelled_before_its_job_exists_refuses_the_job(
    sessions: McpSessionService,
) -> None:
    session = await sessions.create(protocol_version="2025-11-25", owner=None)
    await sessions.begin_request(session.id, "r1")
    assert await sessions.cancel_request(session.id, "r1") is None
    assert await sessions.attach_job(session.id, "r1", "job-2") is Attached.CANCELLED
    assert await sessions.cancel_request(session.id, "r1") is None  # forgotten


async def test_finished_and_unknown_calls_are_ignored(sessions: McpSessionService) -> None:
    session = await sessions.create(protocol_version="2025-11-25", owner=None)
    await sessions.begin_request(session.id, 5)
    await sessions.attach_job(session.id, 5, "job-3")
    await sessions.end_request(session.id, 5)
    assert await sessions.cancel_request(session.id, 5) is None
    assert await sessions.cancel_request(session.id, 99) is None


async def test_a_job_started_after_its_session_ended_recreates_nothing(
    sessions: McpSessionService, redis_client: Redis, key_prefix: str
) -> None:
    session = await sessions.create(protocol_version="2025-11-25", owner=None)
    await sessions.begin_request(session.id, 7)
    requests = f"{key_prefix}mcp:session:{session.id}:requests"
    assert 0 < await redis_client.pttl(requests) <= 60_000
    assert await sessions.delete(session.id) is True  # DELETE while the call starts its job
    assert await sessions.attach_job(session.id, 7, "job-4") is Attached.GONE
    assert await redis_client.exists(requests) == 0  # not recreated (it would never expire)
    assert await sessions.cancel_request(session.id, 7) is None
    await sessions.end_request(session.id, 7)
    assert await redis_client.exists(requests) == 0
