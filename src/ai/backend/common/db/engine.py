"""Async engines and the "create the database if missing" helper."""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..config.sections import DatabaseConfig


def create_engine_from_config(config: DatabaseConfig) -> AsyncEngine:
    return create_async_engine(
        config.url,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        echo=config.echo,
        pool_pre_ping=config.pool_pre_ping,
        connect_args={"server_settings": dict(config.server_settings)},
    )


def _asyncpg_dsn(url: URL, database: str) -> str:
    plain = url.set(drivername="postgresql", database=database)
    return plain.render_as_string(hide_password=False)


async def database_exists(url: str) -> bool:
    parsed = make_url(url)
    connection = await asyncpg.connect(_asyncpg_dsn(parsed, "postgres"))
    try:
        found = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", parsed.database
        )
    finally:
        await connection.close()
    return found is not None


async def create_database_if_missing(url: str) -> bool:
    """Create the URL's database through the server's ``postgres`` database; returns whether
    it was created. Safe against a concurrent creator."""
    parsed = make_url(url)
    if not parsed.database:
        raise ValueError(f"database URL {parsed.render_as_string()} names no database")
    connection = await asyncpg.connect(_asyncpg_dsn(parsed, "postgres"))
    try:
        exists = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", parsed.database
        )
        if exists:
            return False
        quoted = '"' + parsed.database.replace('"', '""') + '"'
        try:
            await connection.execute(f"CREATE DATABASE {quoted}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await connection.close()


async def drop_database(url: str) -> None:
    """Drop the URL's database (tests only drop databases they created)."""
    parsed = make_url(url)
    connection = await asyncpg.connect(_asyncpg_dsn(parsed, "postgres"))
    try:
        quoted = '"' + str(parsed.database).replace('"', '""') + '"'
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await connection.close()
