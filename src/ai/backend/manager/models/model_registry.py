from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ai.backend.common.db.base import Base


class ModelRow(Base):
    """A KServe model served by an actor (registered from its runtime's ``hello``)."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    version: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor_name: Mapped[str] = mapped_column(
        sa.ForeignKey("actors.name", ondelete="CASCADE"), index=True
    )
    # "metadata" is reserved on declarative classes; the column keeps the design's name
    model_metadata: Mapped[dict[str, Any]] = mapped_column(
        "metadata", server_default=sa.text("'{}'::jsonb")
    )
