"""Keypairs for users, admins and agents; only admins manage them over REST."""

from __future__ import annotations

from typing import Any

from ai.backend.common.dto.base import validate_request
from ai.backend.common.dto.manager_api import KeypairCreated, KeypairCreateRequest, KeypairInfo
from ai.backend.common.errors import InvalidInput

from ..errors import KeypairNotFound
from ..repositories.keypairs import KeypairRepository


class KeypairService:
    def __init__(self, keypairs: KeypairRepository) -> None:
        self._keypairs = keypairs

    async def create(self, body: Any) -> KeypairCreated:
        request = validate_request(KeypairCreateRequest, body, error=InvalidInput)
        return await self._keypairs.create(
            user_name=request.user_name, role=request.role, rate_limit=request.rate_limit
        )

    async def list_all(self) -> list[KeypairInfo]:
        return await self._keypairs.list_all()

    async def delete(self, access_key: str) -> None:
        if not await self._keypairs.delete(access_key):
            raise KeypairNotFound(f"keypair {access_key!r} not found")
