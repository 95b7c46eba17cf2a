"""One leader among the processes sharing a database (the managers' scheduler, the gateways'
job-event applier): a PostgreSQL advisory lock.

Each candidate keeps one dedicated connection (outside the engine's pool, so nothing recycles
it) and calls ``pg_try_advisory_lock(key)`` on it every ``retry_interval`` until it gets the
lock. The session holding the lock is the leader; the lock lives exactly as long as that
connection, so:

* the leader checks its connection every ``retry_interval`` (and asyncpg reports a dropped
  connection at once); when it is gone, leadership is lost at once and the process starts
  over as a candidate on a new connection;
* when a leader dies or its connection drops, PostgreSQL releases the lock and another
  candidate takes it on its next try;
* ``stop`` releases the lock by closing the connection.

A leader cut off from the database may believe it still leads until its check fails; the
scheduler's row locks keep two leaders from allocating the same device meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

import asyncpg
from sqlalchemy.engine import make_url

from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

SCHEDULER_LOCK_KEY: Final = 0x6261_692D_7363_6864  # b"bai-schd": the key of the scheduling lock
EVENTS_LOCK_KEY: Final = 0x6261_692D_6576_6E74  # b"bai-evnt": the gateways' job-event applier


def asyncpg_dsn(db_url: str) -> str:
    """A SQLAlchemy URL (``postgresql+asyncpg://…``) as a plain libpq DSN for asyncpg."""
    url = make_url(db_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class LeaderElection:
    """Campaigns for the advisory lock ``lock_key`` in the background once started."""

    lock_key: Final[int]
    retry_interval: Final[float]

    def __init__(
        self,
        db_url: str,
        *,
        retry_interval: float = 1.0,
        lock_key: int = SCHEDULER_LOCK_KEY,
        role: str = "scheduling leader",
    ) -> None:
        self.lock_key = lock_key
        self.role = role
        self.retry_interval = retry_interval
        self._dsn = asyncpg_dsn(db_url)
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self._following.set()
        self.attempts = 0  # campaign rounds so far (taking the lock, or checking it is held)

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def start(self) -> None:
        """Start campaigning; returns after the first attempt (so a lone candidate leads at once
        when the database answers)."""
        if self._task is not None:
            return
        await self._attempt()
        self._task = asyncio.create_task(self._campaign(), name="leader-election")

    async def stop(self) -> None:
        """Stop campaigning and give up leadership."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_connection()
        self._set_leader(False)

    async def wait_until_leader(self) -> None:
        await self._leading.wait()

    async def wait_until_follower(self) -> None:
        """Returns once this process does not lead (at once when it does not)."""
        await self._following.wait()

    async def _campaign(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            await self._attempt()

    async def _attempt(self) -> None:
        """Take the lock when not leading; check the connection when leading."""
        self.attempts += 1
        try:
            connection = self._connection
            if connection is None or connection.is_closed():
                connection = await self._connect()
            if self.is_leader:
                await connection.fetchval("SELECT 1", timeout=self._timeout)
                return
            got = await connection.fetchval(
                "SELECT pg_try_advisory_lock($1)", self.lock_key, timeout=self._timeout
            )
            if got:
                log.info("this process is now the {}", self.role)
                self._set_leader(True)
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            if self.is_leader:
                log.warning("no longer the {}: {}", self.role, e)
            else:
                log.debug("leader election: database unavailable: {}", e)
            self._set_leader(False)
            await self._drop_connection()

    @property
    def _timeout(self) -> float:
        return max(self.retry_interval, 1.0)

    async def _connect(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(self._dsn, timeout=self._timeout)
        connection.add_termination_listener(self._on_terminated)
        self._connection = connection
        return connection

    def _on_terminated(self, connection: asyncpg.Connection) -> None:
        if connection is self._connection:
            if self.is_leader:
                log.warning("no longer the {}: the lock's connection closed", self.role)
            self._connection = None
            self._set_leader(False)

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=self._timeout)
            if not connection.is_closed():
                connection.terminate()

    def _set_leader(self, leading: bool) -> None:
        if leading:
            self._leading.set()
            self._following.clear()
        else:
            self._leading.clear()
            self._following.set()
