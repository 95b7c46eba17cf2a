"""The ``jobs`` table: create, read, list, and find the jobs a sweeper must act on.

Creating, stamping and reading one job run on every call: they are fixed statements sent
through asyncpg (:mod:`ai.backend.common.db.driver`), one round trip each, many rows in one
statement (``unnest`` of arrays)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.db.driver import driver_connection, engine_of
from ai.backend.common.dto.gateway_api import JobInfo
from ai.backend.common.dto.job_event import JobStatus
from ai.backend.common.json import dumps

from ..errors import InvalidArgument
from ..models import JobRow

_JOB_COLUMNS = (
    "id, status, tool, route, arguments, result, error, progress, created_at, updated_at,"
    " deadline_at, last_seq, owner, published_at"
)
# one statement, atomic on its own: every row or none
_INSERT_JOBS = """
INSERT INTO jobs (id, tool, route, arguments, status, deadline_at, owner)
SELECT j.id, j.tool, j.route, j.arguments, 'pending', j.deadline_at, j.owner
FROM unnest($1::varchar[], $2::varchar[], $3::jsonb[], $4::jsonb[], $5::timestamptz[],
            $6::varchar[]) AS j(id, tool, route, arguments, deadline_at, owner)
RETURNING id, created_at
"""
# rows the event applier holds are skipped, not waited for: it stamps them itself (a job with
# an event was published); locked in id order, as the applier locks them
_MARK_PUBLISHED = """
UPDATE jobs SET published_at = now()
WHERE id IN (
    SELECT id FROM jobs WHERE id = ANY($1::varchar[]) AND published_at IS NULL
    ORDER BY id FOR UPDATE SKIP LOCKED
)
"""
_GET_JOB = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1"
# written out, not bound: a generic plan (the gateway's sessions make them) can then use the
# partial index ix_jobs_open_deadline, whose condition this is
_OPEN = sa.text("jobs.status IN ('pending', 'running')")


@dataclass(frozen=True)
class NewJob:
    id: str
    tool: str | None
    route: list[str]
    arguments: dict[str, Any]
    deadline_at: datetime
    owner: str | None


@dataclass(frozen=True)
class StoredJob:
    info: JobInfo
    owner: str | None
    published: bool


def job_info(row: Any) -> JobInfo:
    return JobInfo(
        id=row.id,
        status=row.status,
        tool=row.tool,
        route=row.route,
        arguments=row.arguments,
        result=row.result,
        error=row.error,
        progress=row.progress,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deadline_at=row.deadline_at,
        last_seq=row.last_seq,
    )


def _job_info_of_record(record: Any) -> JobInfo:
    """``job_info`` of an asyncpg record of ``_JOB_COLUMNS``."""
    return job_info(SimpleNamespace(**dict(record.items())))


def _json(value: Any) -> str | None:
    return None if value is None else dumps(value).decode()


def encode_cursor(created_at: datetime, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{job_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        at, job_id = text.split("|", 1)
        return datetime.fromisoformat(at), job_id
    except (ValueError, UnicodeError):
        raise InvalidArgument("cursor: not a cursor this API returned") from None


class JobRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._engine = engine_of(sessions)

    async def insert(self, jobs: Sequence[NewJob]) -> dict[str, datetime]:
        """Write the jobs as ``pending`` (one statement); returns their ``created_at``."""
        async with driver_connection(self._engine) as connection:
            records = await connection.fetch(
                _INSERT_JOBS,
                [job.id for job in jobs],
                [job.tool for job in jobs],
                [_json(job.route) for job in jobs],
                [_json(job.arguments) for job in jobs],
                [job.deadline_at for job in jobs],
                [job.owner for job in jobs],
            )
        return {record["id"]: record["created_at"] for record in records}

    async def mark_published(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        async with driver_connection(self._engine) as connection:
            await connection.execute(_MARK_PUBLISHED, list(job_ids))

    async def get(self, job_id: str) -> StoredJob | None:
        async with driver_connection(self._engine) as connection:
            record = await connection.fetchrow(_GET_JOB, job_id)
        if record is None:
            return None
        info = _job_info_of_record(record)
        return StoredJob(info, record["owner"], record["published_at"] is not None)

    async def page(
        self,
        *,
        owner: str | None,
        all_owners: bool,
        status: JobStatus | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[JobInfo], str | None]:
        query = sa.select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc())
        if not all_owners:
            query = query.where(JobRow.owner == owner)
        if status is not None:
            query = query.where(JobRow.status == status)
        if cursor is not None:
            at, job_id = decode_cursor(cursor)
            query = query.where(sa.tuple_(JobRow.created_at, JobRow.id) < sa.tuple_(at, job_id))
        async with self._sessions() as session:
            rows = list(await session.scalars(query.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
        return [job_info(row) for row in rows], next_cursor

    async def republish_unconfirmed(
        self,
        *,
        older_than: float,
        limit: int,
        publish: Callable[[list[JobInfo]], Awaitable[None]],
    ) -> int:
        """Jobs whose publish was not confirmed ``older_than`` seconds after their creation
        (the gateway that created them died, or lost Redis, in between) are handed to
        ``publish`` under a row lock (so one sweeper takes each), then stamped published; if
        ``publish`` raises, nothing is stamped and they are tried again later. Returns how many
        were handed over."""
        async with self._sessions.begin() as session:
            rows = list(
                await session.scalars(
                    sa.select(JobRow)
                    .where(
                        JobRow.published_at.is_(None),
                        JobRow.created_at
                        < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than),
                    )
                    .order_by(JobRow.created_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:
                return 0
            await publish([job_info(row) for row in rows])
            await session.execute(
                sa.update(JobRow)
                .where(JobRow.id.in_([row.id for row in rows]))
                .values(published_at=sa.func.now())
            )
            return len(rows)

    async def overdue(
        self, *, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[JobInfo]:
        """Open jobs whose deadline has passed (by the database's clock), by deadline, from
        after ``(deadline_at, id)`` (to page through all of them)."""
        query = sa.select(JobRow).where(_OPEN, JobRow.deadline_at < sa.func.now())
        if after is not None:
            query = query.where(sa.tuple_(JobRow.deadline_at, JobRow.id) > sa.tuple_(*after))
        async with self._sessions() as session:
            rows = await session.scalars(query.order_by(JobRow.deadline_at, JobRow.id).limit(limit))
            return [job_info(row) for row in rows]

    async def count_by_status(self) -> dict[JobStatus, int]:
        async with self._sessions() as session:
            result = await session.execute(
                sa.select(JobRow.status, sa.func.count()).group_by(JobRow.status)
            )
            return {JobStatus(status): count for status, count in result}
