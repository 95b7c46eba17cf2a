"""The ``jobs`` table: create, read, list, and find the jobs a sweeper must act on."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.gateway_api import JobInfo
from ai.backend.common.dto.job_event import JobStatus

from ..errors import InvalidArgument
from ..models import JobRow

OPEN_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)
_JOBS = cast(sa.Table, JobRow.__table__)
_INSERT_JOBS = sa.insert(_JOBS).returning(_JOBS.c.id, _JOBS.c.created_at)


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
    )


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

    async def insert(self, jobs: Sequence[NewJob]) -> dict[str, datetime]:
        """Write the jobs as ``pending`` (one statement); returns their ``created_at``."""
        rows = [
            {
                "id": job.id,
                "tool": job.tool,
                "route": job.route,
                "arguments": job.arguments,
                "status": JobStatus.PENDING,
                "deadline_at": job.deadline_at,
                "owner": job.owner,
            }
            for job in jobs
        ]
        async with self._sessions.begin() as session:
            # one compiled statement, executed for many rows (SQLAlchemy batches them into
            # multi-row INSERTs): a statement built with .values(rows) is compiled anew each time
            connection = await session.connection()
            result = await connection.execute(_INSERT_JOBS, rows)
            return {row.id: row.created_at for row in result}

    async def mark_published(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        async with self._sessions.begin() as session:
            # rows the event applier holds are skipped, not waited for: it stamps them itself
            # (a job with an event was published); locked in id order, as the applier locks them
            locked = list(
                await session.scalars(
                    sa.select(JobRow.id)
                    .where(JobRow.id.in_(job_ids), JobRow.published_at.is_(None))
                    .order_by(JobRow.id)
                    .with_for_update(skip_locked=True)
                )
            )
            if locked:
                await session.execute(
                    sa.update(JobRow)
                    .where(JobRow.id.in_(locked))
                    .values(published_at=sa.func.now())
                )

    async def get(self, job_id: str) -> StoredJob | None:
        async with self._sessions() as session:
            row = await session.scalar(sa.select(JobRow).where(JobRow.id == job_id))
            if row is None:
                return None
            return StoredJob(job_info(row), row.owner, row.published_at is not None)

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
        query = sa.select(JobRow).where(
            JobRow.status.in_(OPEN_STATUSES), JobRow.deadline_at < sa.func.now()
        )
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
