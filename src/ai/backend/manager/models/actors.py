from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from ai.backend.common.db.base import Base, enum_column_type, now_default
from ai.backend.common.dto.actor_spec import ActorStatus
from ai.backend.common.dto.agent import ReplicaStatus


class ActorRow(Base):
    """A deployed actor: its ActorSpec as JSON, bumped ``generation`` on every apply."""

    __tablename__ = "actors"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    spec: Mapped[dict[str, Any]]
    status: Mapped[ActorStatus] = mapped_column(enum_column_type(ActorStatus, "actor_status"))
    generation: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("1"))
    is_system: Mapped[bool] = mapped_column(server_default=sa.false())
    # replicas wanted now: the autoscaler's decision, or the count pinned by ``scale``
    desired_replicas: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    pinned_replicas: Mapped[int | None] = mapped_column(sa.Integer)
    # the autoscaler's memory: when it last scaled each way, since when the queue is empty
    scaled_up_at: Mapped[datetime | None]
    scaled_down_at: Mapped[datetime | None]
    idle_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=now_default())
    updated_at: Mapped[datetime] = mapped_column(server_default=now_default())


class ReplicaRow(Base):
    """One running (or wanted) copy of an actor, with its concrete allocation on an agent."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor_name: Mapped[str] = mapped_column(
        sa.ForeignKey("actors.name", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[str | None] = mapped_column(sa.ForeignKey("agents.id"), index=True)
    status: Mapped[ReplicaStatus] = mapped_column(
        enum_column_type(ReplicaStatus, "replica_status"), index=True
    )
    slots: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    device_ids: Mapped[list[str]] = mapped_column(
        postgresql.JSONB, server_default=sa.text("'[]'::jsonb")
    )
    generation: Mapped[int] = mapped_column(sa.Integer)
    restarts: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    status_info: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(server_default=now_default())
    updated_at: Mapped[datetime] = mapped_column(server_default=now_default())


class SchedulerEventRow(Base):
    """Why something is pending, or what the autoscaler decided, readable by users."""

    __tablename__ = "scheduler_events"
    __table_args__ = (
        sa.Index("ix_scheduler_events_actor_name_at", "actor_name", "at"),
        sa.Index("ix_scheduler_events_kind_at", "kind", "at"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    actor_name: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(32))
    agent_id: Mapped[str | None] = mapped_column(sa.String(64))
    replica_id: Mapped[str | None] = mapped_column(sa.String(64))
    message: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(server_default=now_default())
