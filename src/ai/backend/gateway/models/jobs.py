from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from ai.backend.common.db.base import Base, enum_column_type, now_default
from ai.backend.common.dto.job_event import JobEventKind, JobStatus


class JobRow(Base):
    """A job of record. Terminal states are immutable: the first terminal write wins (a
    conditional UPDATE ``WHERE status IN ('pending', 'running')``)."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_status_created_at", "status", "created_at"),
        sa.Index(
            "ix_jobs_unpublished",
            "created_at",
            postgresql_where=sa.text("published_at IS NULL"),
        ),
        sa.Index(
            "ix_jobs_open_deadline",
            "deadline_at",
            postgresql_where=sa.text("status IN ('pending', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    tool: Mapped[str | None] = mapped_column(sa.String(128))
    route: Mapped[list[str]] = mapped_column(postgresql.JSONB)
    arguments: Mapped[dict[str, Any]]
    status: Mapped[JobStatus] = mapped_column(enum_column_type(JobStatus, "job_status"))
    result: Mapped[Any] = mapped_column(postgresql.JSONB, nullable=True)  # any JSON value
    error: Mapped[dict[str, Any] | None]
    progress: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[datetime] = mapped_column(server_default=now_default())
    updated_at: Mapped[datetime] = mapped_column(server_default=now_default())
    deadline_at: Mapped[datetime | None]
    owner: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    # the newest event's seq (events are numbered 1, 2, ... under the job row's lock)
    last_seq: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    # partials stored; past ``[jobs] max_partials`` the rest are coalesced (not stored one by one)
    partials: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    # when the first envelope was confirmed published; NULL: publish again (or fail) later
    published_at: Mapped[datetime | None]


class JobEventRow(Base):
    """The ordered history of a job, replayed by the SSE stream (``id: <seq>``)."""

    __tablename__ = "job_events"

    job_id: Mapped[str] = mapped_column(
        sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    kind: Mapped[JobEventKind] = mapped_column(enum_column_type(JobEventKind, "job_event_kind"))
    data: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    at: Mapped[datetime] = mapped_column(server_default=now_default())
    # the ``bai:events`` entry it came from (NULL: written by the gateway itself), so that an
    # entry delivered twice is applied once
    entry_id: Mapped[str | None] = mapped_column(sa.String(40), unique=True)
