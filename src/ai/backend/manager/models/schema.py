"""Create and migrate the database of record (``mgr schema oneshot`` / ``mgr schema status``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from ai.backend.common.db.engine import create_database_if_missing, database_exists

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class OneshotReport:
    database: str
    created_database: bool
    from_revision: str | None
    to_revision: str | None


@dataclass(frozen=True)
class SchemaStatus:
    database: str
    database_exists: bool
    current_revision: str | None
    head_revision: str | None
    tables: tuple[str, ...]

    @property
    def is_current(self) -> bool:
        return self.database_exists and self.current_revision == self.head_revision


def alembic_config(db_url: str) -> Config:
    """An Alembic config for the platform's history, independent of the working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    return config


def head_revision(db_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _table_names(connection: Connection) -> list[str]:
    return sorted(sa.inspect(connection).get_table_names())


async def oneshot(db_url: str) -> OneshotReport:
    """Create the database if missing and upgrade it to head. Idempotent; concurrent callers
    serialize on an advisory lock taken by the migration environment."""
    created = await create_database_if_missing(db_url)
    config = alembic_config(db_url)
    engine = create_async_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as connection:
            before = await connection.run_sync(_current_revision)

            def upgrade(sync_connection: Connection) -> None:
                config.attributes["connection"] = sync_connection
                command.upgrade(config, "head")

            await connection.run_sync(upgrade)
            await connection.commit()
            after = await connection.run_sync(_current_revision)
    finally:
        await engine.dispose()
    return OneshotReport(
        database=str(make_url(db_url).database),
        created_database=created,
        from_revision=before,
        to_revision=after,
    )


async def status(db_url: str) -> SchemaStatus:
    name = str(make_url(db_url).database)
    head = head_revision(db_url)
    if not await database_exists(db_url):
        return SchemaStatus(name, False, None, head, ())
    engine = create_async_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(_current_revision)
            tables = await connection.run_sync(_table_names)
    finally:
        await engine.dispose()
    return SchemaStatus(name, True, current, head, tuple(tables))
