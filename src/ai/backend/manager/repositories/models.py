"""The KServe model registry, filled from the runtimes' hellos (see agents.heartbeat)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.manager_api import ModelInfo

from ..errors import ModelNotFound
from ..models import ModelRow


def _info(row: ModelRow) -> ModelInfo:
    return ModelInfo(
        name=row.name, version=row.version, actor_name=row.actor_name, metadata=row.model_metadata
    )


class ModelRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def list_all(self) -> list[ModelInfo]:
        async with self._sessions() as session:
            rows = await session.scalars(
                sa.select(ModelRow).order_by(ModelRow.name, ModelRow.version)
            )
            return [_info(row) for row in rows]

    async def versions(self, name: str) -> list[ModelInfo]:
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    sa.select(ModelRow).where(ModelRow.name == name).order_by(ModelRow.version)
                )
            )
        if not rows:
            raise ModelNotFound(f"model {name!r} not found")
        return [_info(row) for row in rows]
