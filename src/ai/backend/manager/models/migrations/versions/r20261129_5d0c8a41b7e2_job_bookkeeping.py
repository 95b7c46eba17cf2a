"""job bookkeeping: event numbering, publish confirmation, coalesced partials, entry ids

Revision ID: 5d0c8a41b7e2
Revises: ea671841f274
Create Date: 2026-11-29 13:40:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d0c8a41b7e2"
down_revision: str | None = "ea671841f274"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("last_seq", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "jobs", sa.Column("partials", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("jobs", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_jobs_unpublished",
        "jobs",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index(
        "ix_jobs_open_deadline",
        "jobs",
        ["deadline_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.add_column("job_events", sa.Column("entry_id", sa.String(length=40), nullable=True))
    op.create_unique_constraint(op.f("uq_job_events_entry_id"), "job_events", ["entry_id"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_job_events_entry_id"), "job_events", type_="unique")
    op.drop_column("job_events", "entry_id")
    op.drop_index(
        "ix_jobs_open_deadline",
        table_name="jobs",
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.drop_index(
        "ix_jobs_unpublished", table_name="jobs", postgresql_where=sa.text("published_at IS NULL")
    )
    op.drop_column("jobs", "published_at")
    op.drop_column("jobs", "partials")
    op.drop_column("jobs", "last_seq")
