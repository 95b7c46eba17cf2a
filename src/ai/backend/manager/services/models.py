"""The model registry as users read it."""

from __future__ import annotations

from ai.backend.common.dto.manager_api import ModelInfo

from ..repositories.models import ModelRepository


class ModelService:
    def __init__(self, models: ModelRepository) -> None:
        self._models = models

    async def list_all(self) -> list[ModelInfo]:
        return await self._models.list_all()

    async def versions(self, name: str) -> list[ModelInfo]:
        return await self._models.versions(name)
