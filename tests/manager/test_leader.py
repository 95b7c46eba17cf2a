"""The scheduling leader: one PostgreSQL advisory lock among managers on one database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ai.backend.manager.services.scheduling.leader import (
    SCHEDULER_LOCK_KEY,
    LeaderElection,
    asyncpg_dsn,
)
from ai.backend.testutils.waiting import wait_until

WAIT = 5.0


async def kill_lock_holder(database_url: str) -> None:
    """Terminate, from outside, the database session holding the scheduling lock."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        pid = await connection.fetchval(
            """
            SELECT pid FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND objsubid = 1
              AND classid = $1 AND objid = $2
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """,
            SCHEDULER_LOCK_KEY >> 32,
            SCHEDULER_LOCK_KEY & 0xFFFF_FFFF,
        )
        assert pid is not None
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()


@pytest.fixture
async def candidates(empty_database_url: str) -> AsyncIterator[tuple[LeaderElection, ...]]:
    """Two managers' elections on one database, the first started first (and leading)."""
    first = LeaderElection(empty_database_url, retry_interval=0.1)
    second = LeaderElection(empty_database_url, retry_interval=0.1)
    await first.start()
    await second.start()
    yield first, second
    await first.stop()
    await second.stop()


async def _more_rounds(*elections: LeaderElection, rounds: int = 3) -> None:
    """Wait until each election has campaigned ``rounds`` more times: a window in which a
    second leader would have appeared, measured in attempts rather than seconds."""
    goals = [(e, e.attempts + rounds) for e in elections]
    await wait_until(
        lambda: all(e.attempts >= goal for e, goal in goals), what=f"{rounds} campaign rounds"
    )


async def test_one_leader_and_a_takeover_when_its_connection_drops(
    empty_database_url: str, candidates: tuple[LeaderElection, ...]
) -> None:
    first, second = candidates
    assert first.is_leader and not second.is_leader
    await _more_rounds(first, second)  # both keep campaigning; still exactly one leader
    assert first.is_leader and not second.is_leader

    await kill_lock_holder(empty_database_url)
    await asyncio.wait_for(first.wait_until_follower(), WAIT)
    # the lock is free: whoever takes it first leads (the old leader may, on a new
    # connection), and there is never more than one leader
    await wait_until(lambda: first.is_leader or second.is_leader, what="a new leader", timeout=WAIT)
    await _more_rounds(first, second)
    assert first.is_leader != second.is_leader


async def test_a_stopped_leader_hands_over(candidates: tuple[LeaderElection, ...]) -> None:
    first, second = candidates
    assert first.is_leader and not second.is_leader
    await first.stop()
    assert not first.is_leader
    await asyncio.wait_for(second.wait_until_leader(), WAIT)


async def test_an_unreachable_database_makes_no_leader() -> None:
    election = LeaderElection("postgresql+asyncpg://postgres@127.0.0.1:1/none", retry_interval=0.1)
    await election.start()
    try:
        assert not election.is_leader
    finally:
        await election.stop()
