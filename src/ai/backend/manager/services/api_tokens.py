"""API tokens for the gateway: admins issue them for a keypair (shown once), list and revoke
them. Only a hash of a token is stored (``ai.backend.common.auth.api_tokens``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from ai.backend.common.auth.api_tokens import hash_token, new_token
from ai.backend.common.dto.base import validate_request
from ai.backend.common.dto.gateway_api import ApiTokenCreated, ApiTokenCreateRequest, ApiTokenInfo
from ai.backend.common.errors import InvalidInput
from ai.backend.common.log import BraceStyleAdapter

from ..errors import ApiTokenNotFound, KeypairNotFound
from ..repositories.api_tokens import ApiTokenRepository

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

MAX_TOKEN_LIFETIME = timedelta(days=3650)


class ApiTokenService:
    def __init__(self, tokens: ApiTokenRepository) -> None:
        self._tokens = tokens

    async def create(self, body: Any) -> ApiTokenCreated:
        """A new token for ``access_key``: :class:`KeypairNotFound` (404) when there is no such
        keypair, :class:`InvalidInput` (400) for a lifetime out of range."""
        request = validate_request(ApiTokenCreateRequest, body, error=InvalidInput)
        if request.expires_in is not None and not (
            timedelta(0) < request.expires_in <= MAX_TOKEN_LIFETIME
        ):
            raise InvalidInput(
                f"expires_in: must be above 0 and at most {MAX_TOKEN_LIFETIME.days} days"
            )
        token = new_token()
        info = await self._tokens.create(
            access_key=request.access_key,
            token_hash=hash_token(token),
            name=request.name,
            expires_in=request.expires_in,
        )
        if info is None:
            raise KeypairNotFound(f"access_key: keypair {request.access_key!r} not found")
        log.info("issued API token {} for {}", info.id, info.access_key)
        return ApiTokenCreated(**info.model_dump(), token=token)

    async def list_all(self) -> list[ApiTokenInfo]:
        return await self._tokens.list_all()

    async def delete(self, token_id: str) -> None:
        if not await self._tokens.delete(token_id):
            raise ApiTokenNotFound(f"API token {token_id!r} not found")
        log.info("revoked API token {}", token_id)
