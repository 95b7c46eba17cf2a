from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from ai.backend.common.db.base import Base, enum_column_type, now_default
from ai.backend.common.dto.agent import AgentStatus


class AgentRow(Base):
    """A node daemon. ``slots_used`` is derived from the replicas' allocations in the same
    transaction that changes them, never counted separately."""

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    addr: Mapped[str] = mapped_column(sa.String(256))
    status: Mapped[AgentStatus] = mapped_column(
        enum_column_type(AgentStatus, "agent_status"), index=True
    )
    slots_total: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    slots_used: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    devices: Mapped[list[dict[str, Any]]] = mapped_column(
        postgresql.JSONB, server_default=sa.text("'[]'::jsonb")
    )
    labels: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    first_contact: Mapped[datetime] = mapped_column(server_default=now_default())
    last_heartbeat: Mapped[datetime] = mapped_column(server_default=now_default())
    version: Mapped[str] = mapped_column(sa.String(64))
    # the agent keypair that first heartbeated as this agent; only it may do so again
    access_key: Mapped[str | None] = mapped_column(sa.String(64))
    # the newest heartbeat applied: the agent process (boot) and its count
    boot_id: Mapped[str | None] = mapped_column(sa.String(64))
    last_seq: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
