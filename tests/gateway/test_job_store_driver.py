"""The job paths that run through asyncpg directly (real PostgreSQL): a batch PostgreSQL refuses
is told apart from a passing failure, publish stamps skip the rows the event applier holds, a
connection a database restart broke is replaced after the one statement that met it, and the
gateway's sessions plan each statement once, through the indexes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ai.backend.common.db.driver import driver_connection
from ai.backend.common.db.engine import create_engine_from_config
from ai.backend.common.dto.job_event import JobEvent, JobEventKind, JobStatus
from ai.backend.gateway.config import INDEX_PLANS, GatewayDatabaseConfig
from ai.backend.gateway.repositories.job_events import IncomingEvent, JobEventRepository
from ai.backend.gateway.repositories.jobs import JobRepository, NewJob
from ai.backend.gateway.services.event_ingestor import is_refused

Sessions = async_sessionmaker[AsyncSession]


def _job(job_id: str | None = None, arguments: dict[str, object] | None = None) -> NewJob:
    deadline = datetime.now(UTC) + timedelta(minutes=1)
    return NewJob(
        job_id or uuid.uuid4().hex, "tool", ["a", "b"], arguments or {"value": 1}, deadline, "ak"
    )


async def _published(engine: AsyncEngine, job_ids: list[str]) -> dict[str, bool]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.text("SELECT id, published_at IS NOT NULL FROM jobs WHERE id = ANY(:ids)"),
            {"ids": job_ids},
        )
        return {row[0]: row[1] for row in rows}


async def test_a_batch_of_jobs_is_written_whole_with_its_values(sessions: Sessions) -> None:
    jobs = JobRepository(sessions)
    first, second = _job(arguments={"big": 2**70, "text": "é"}), _job()
    created = await jobs.insert([first, second])
    assert set(created) == {first.id, second.id}
    stored = await jobs.get(first.id)
    assert stored is not None
    assert (stored.info.status, stored.info.route, stored.info.arguments, stored.owner) == (
        JobStatus.PENDING,
        ["a", "b"],
        {"big": 2**70, "text": "é"},
        "ak",
    )
    assert stored.info.created_at == created[first.id]
    assert stored.published is False
    assert await jobs.get("no-such-job") is None


async def test_a_batch_postgresql_refuses_fails_whole_and_is_recognised_as_refused(
    sessions: Sessions, db_engine: AsyncEngine
) -> None:
    jobs = JobRepository(sessions)
    good, too_long = _job(), _job("x" * 65)  # jobs.id is varchar(64)
    with pytest.raises(asyncpg.PostgresError) as refused:
        await jobs.insert([good, too_long])
    assert refused.value.sqlstate == "22001"
    assert is_refused(refused.value)
    assert await _published(db_engine, [good.id]) == {}  # nothing of the batch was written
    assert not is_refused(ConnectionResetError("gone"))
    assert not is_refused(asyncpg.ConnectionDoesNotExistError("closed"))


async def test_publish_stamps_skip_the_rows_the_applier_holds(
    sessions: Sessions, db_engine: AsyncEngine
) -> None:
    jobs = JobRepository(sessions)
    free, held = _job(), _job()
    await jobs.insert([free, held])
    async with db_engine.connect() as applier:
        await applier.execute(
            sa.text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": held.id}
        )
        await jobs.mark_published([free.id, held.id])  # returns at once: nothing waits
        assert await _published(db_engine, [free.id, held.id]) == {free.id: True, held.id: False}
        await applier.rollback()
    await jobs.mark_published([held.id])
    assert await _published(db_engine, [held.id]) == {held.id: True}


async def test_events_are_applied_and_read_back_through_the_driver(sessions: Sessions) -> None:
    jobs, events = JobRepository(sessions), JobEventRepository(sessions, max_partials=10)
    job = _job()
    await jobs.insert([job])
    running = JobEvent(job_id=job.id, kind=JobEventKind.RUNNING, step=1, total=2)
    ended = JobEvent(job_id=job.id, kind=JobEventKind.SUCCEEDED, result=None)
    report = await events.apply([IncomingEvent(running, "5-0"), IncomingEvent(ended, "5-1")])
    assert [(e.seq, e.kind) for e in report.stored] == [
        (1, JobEventKind.RUNNING),
        (2, JobEventKind.SUCCEEDED),
    ]
    history = await events.after(job.id, 0)
    assert [(e.seq, e.kind, e.data) for e in history] == [
        (e.seq, e.kind, e.data) for e in report.stored
    ]
    assert [e.seq for e in await events.after(job.id, 1, limit=5)] == [2]
    stored = await jobs.get(job.id)
    assert stored is not None
    assert (stored.info.status, stored.info.result, stored.info.progress) == (
        JobStatus.SUCCEEDED,
        None,
        1.0,
    )
    assert stored.info.last_seq == 2  # the events stream has replayed all once it sent id 2
    assert stored.published is True  # a job with an event was published


async def test_a_connection_the_database_dropped_fails_one_statement_then_is_replaced(
    database_url: str,
) -> None:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    try:
        jobs = JobRepository(async_sessionmaker(engine, expire_on_commit=False))
        job = _job()
        await jobs.insert([job])
        async with engine.connect() as connection:
            pid = await connection.scalar(sa.text("SELECT pg_backend_pid()"))
        admin = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            # waits (up to 5 s) until the backend is gone
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid) is True
        finally:
            await admin.close()
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await jobs.get(job.id)
        stored = await jobs.get(job.id)  # on a new connection
        assert stored is not None and stored.info.id == job.id
    finally:
        await engine.dispose()


async def test_the_gateways_sessions_plan_through_indexes_once_per_statement(
    database_url: str,
) -> None:
    config = GatewayDatabaseConfig(url=database_url)
    assert config.server_settings == INDEX_PLANS
    engine = create_engine_from_config(config)
    try:
        async with driver_connection(engine) as connection:
            settings = [await connection.fetchval(f"SHOW {name}") for name in INDEX_PLANS]
    finally:
        await engine.dispose()
    assert settings == list(INDEX_PLANS.values())
