from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ai.backend.common.db.base import Base, now_default


class KeypairRow(Base):
    """An API credential. The secret is kept because HMAC verification needs it."""

    __tablename__ = "keypairs"
    __table_args__ = (
        sa.CheckConstraint("role IN ('user', 'admin', 'agent')", name="keypair_role"),
    )

    access_key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    secret_key: Mapped[str] = mapped_column(sa.String(128))
    user_name: Mapped[str] = mapped_column(sa.String(128))
    is_admin: Mapped[bool] = mapped_column(server_default=sa.false())
    # "user", "admin" (is_admin) or "agent" (may only send heartbeats)
    role: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'user'"))
    is_active: Mapped[bool] = mapped_column(server_default=sa.true())
    rate_limit: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=now_default())
