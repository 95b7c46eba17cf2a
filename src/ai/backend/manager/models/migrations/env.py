"""Alembic environment of the platform's single migration history.

Run by ``./backend.ai mgr schema oneshot`` (which passes an open connection in
``config.attributes["connection"]``) or by ``./py -m alembic …`` from the repository root (which
takes the database URL from ``sqlalchemy.url`` if set, else from the manager's configuration:
``BACKEND_DB__URL`` > ``manager.toml`` > default).
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import ai.backend.gateway.models  # noqa: F401  (registers the gateway's tables)
from ai.backend.manager.models import metadata

# One migration at a time, across every manager starting at once.
MIGRATION_LOCK_ID = 0x62616921  # "bai!"

config = context.config


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from ai.backend.manager.config import load_manager_config

    return load_manager_config().config.db.url


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def run_with_new_engine() -> None:
    engine = create_async_engine(database_url(), poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    run_migrations(shared)
else:
    asyncio.run(run_with_new_engine())
