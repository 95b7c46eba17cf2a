"""The asyncpg connection under a pooled SQLAlchemy connection, for hot paths that run a few
fixed statements many times a second (the gateway's job creation and event ingestion).

SQLAlchemy's ORM and Core cost about as much CPU per statement as PostgreSQL does to run a
small one; these paths instead send hand-written SQL through asyncpg's own prepared-statement
cache, one round trip per statement, on a connection of the same pool. Parameters are plain
Python values (arrays for many rows: ``unnest($1::text[], ...)``); ``jsonb`` parameters are
JSON text and ``jsonb`` results come back parsed (the codecs SQLAlchemy's dialect installs on
every connection)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine a session factory binds its sessions to."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine):
        raise TypeError("the session factory is not bound to an AsyncEngine")
    return engine


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's asyncpg connection, outside any SQLAlchemy transaction (each
    statement commits on its own unless run inside ``connection.transaction()``). After an error
    PostgreSQL reported the connection goes back to the pool; after anything else (the
    connection lost, the server shutting it down, a cancelled statement) it is dropped, so the
    pool never lends out a connection in an unknown state."""
    async with engine.connect() as connection:
        fairy = await connection.get_raw_connection()
        driver: Any = fairy.driver_connection
        try:
            yield driver
        except asyncpg.PostgresError as e:
            if driver.is_closed() or isinstance(e, _CONNECTION_ENDED):
                await connection.invalidate()
            raise
        except BaseException:
            await connection.invalidate()
            raise


# server errors after which the connection is gone: class 08 (connection exception) and 57
# (operator intervention: admin shutdown, crash shutdown, cannot connect now)
_CONNECTION_ENDED = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
