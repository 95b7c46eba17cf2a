from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

import ai.backend.gateway.models  # noqa: F401  (registers the gateway's tables)
from ai.backend.common.db.engine import database_exists
from ai.backend.manager.models import metadata
from ai.backend.manager.models.schema import head_revision, oneshot, status

EXPECTED_TABLES = (
    "actors",
    "agents",
    "alembic_version",
    "api_tokens",
    "job_events",
    "jobs",
    "keypairs",
    "models",
    "replicas",
    "scheduler_events",
)


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


async def test_oneshot_creates_the_database_and_is_idempotent(missing_database_url: str) -> None:
    assert not await database_exists(missing_database_url)
    before = await status(missing_database_url)
    assert (before.database_exists, before.current_revision, before.is_current) == (
        False,
        None,
        False,
    )

    first = await oneshot(missing_database_url)
    head = head_revision(missing_database_url)
    assert head is not None
    assert (first.created_database, first.from_revision, first.to_revision) == (True, None, head)

    second = await oneshot(missing_database_url)
    assert (second.created_database, second.from_revision, second.to_revision) == (
        False,
        head,
        head,
    )

    after = await status(missing_database_url)
    assert after.is_current
    assert after.tables == EXPECTED_TABLES


async def test_migrations_and_models_do_not_drift(empty_database_url: str) -> None:
    await oneshot(empty_database_url)
    engine = create_async_engine(empty_database_url, poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_status_columns_reject_unknown_values(empty_database_url: str) -> None:
    await oneshot(empty_database_url)
    engine = create_async_engine(empty_database_url, poolclass=sa.pool.NullPool)
    insert = sa.text(
        "INSERT INTO agents (id, addr, status, version) VALUES (:id, '127.0.0.1:6011', :s, '0.1')"
    )
    try:
        async with engine.begin() as connection:
            await connection.execute(insert, {"id": "ag-1", "s": "alive"})
        with pytest.raises(IntegrityError, match="ck_agents_agent_status"):
            async with engine.begin() as connection:
                await connection.execute(insert, {"id": "ag-2", "s": "sleepy"})
        async with engine.connect() as connection:
            rows = (await connection.execute(sa.text("SELECT id, status FROM agents"))).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [("ag-1", "alive")]
