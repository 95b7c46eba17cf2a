"""Credentials that more than one service reads: keypairs (HMAC) and the API tokens issued for
them (Bearer). The manager writes both; the gateway only reads them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, now_default

KEYPAIR_ROLES = ("user", "admin", "agent", "gateway")


class KeypairRow(Base):
    """An API credential. The secret is kept because HMAC verification needs it."""

    __tablename__ = "keypairs"
    __table_args__ = (
        sa.CheckConstraint(
            "role IN (" + ", ".join(f"'{role}'" for role in KEYPAIR_ROLES) + ")",
            name="keypair_role",
        ),
    )

    access_key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    secret_key: Mapped[str] = mapped_column(sa.String(128))
    user_name: Mapped[str] = mapped_column(sa.String(128))
    is_admin: Mapped[bool] = mapped_column(server_default=sa.false())
    # "user", "admin" (is_admin), "agent" (may only send heartbeats) or "gateway" (may only
    # read the model registry)
    role: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'user'"))
    is_active: Mapped[bool] = mapped_column(server_default=sa.true())
    rate_limit: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=now_default())


class ApiTokenRow(Base):
    """A Bearer token for the gateway, acting as its keypair. Only the SHA-256 hex digest of the
    token is stored; the token itself is shown once, when it is created."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    access_key: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("keypairs.access_key", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(server_default=now_default())
    expires_at: Mapped[datetime | None]
