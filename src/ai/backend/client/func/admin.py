"""Administration (manager ``/v1/admin``, admin keypairs only): keypairs, and the API tokens
that authenticate a keypair's callers at the gateway (``Authorization: Bearer …``)."""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any

from ai.backend.common.dto.gateway_api import ApiTokenCreated, ApiTokenInfo
from ai.backend.common.dto.manager_api import KeypairCreated, KeypairInfo, KeypairRoleName

from ..transport import ServiceEndpoint, parse_as, parse_items, path_segment
from .jobs import duration_text


class Keypairs:
    def __init__(self, manager: ServiceEndpoint) -> None:
        self._manager = manager

    async def create(
        self,
        role: KeypairRoleName = "user",
        user_name: str | None = None,
        *,
        rate_limit: int | None = None,
    ) -> KeypairCreated:
        """A new keypair (``user_name`` defaults to the role); the only answer that carries
        its secret key."""
        body: dict[str, Any] = {"role": role, "user_name": user_name or role}
        if rate_limit is not None:
            body["rate_limit"] = rate_limit
        _, answer = await self._manager.call("POST", "/v1/admin/keypairs", body=body)
        return parse_as(KeypairCreated, answer, what="keypair")

    async def list(self) -> builtins.list[KeypairInfo]:
        answer = await self._manager.get("/v1/admin/keypairs")
        return parse_items(KeypairInfo, answer, what="keypair list")

    async def delete(self, access_key: str) -> None:
        await self._manager.call("DELETE", f"/v1/admin/keypairs/{path_segment(access_key)}")


class Tokens:
    def __init__(self, manager: ServiceEndpoint) -> None:
        self._manager = manager

    async def create(
        self,
        access_key: str,
        *,
        name: str | None = None,
        expires_in: str | timedelta | None = None,
    ) -> ApiTokenCreated:
        """A Bearer token for the gateway acting as ``access_key``; the token is shown only
        in this answer."""
        body: dict[str, Any] = {"access_key": access_key}
        if name is not None:
            body["name"] = name
        if expires_in is not None:
            body["expires_in"] = duration_text(expires_in)
        _, answer = await self._manager.call("POST", "/v1/admin/tokens", body=body)
        return parse_as(ApiTokenCreated, answer, what="API token")

    async def list(self) -> builtins.list[ApiTokenInfo]:
        answer = await self._manager.get("/v1/admin/tokens")
        return parse_items(ApiTokenInfo, answer, what="API token list")

    async def delete(self, token_id: str) -> None:
        await self._manager.call("DELETE", f"/v1/admin/tokens/{path_segment(token_id)}")


class Admin:
    def __init__(self, manager: ServiceEndpoint) -> None:
        self.keypairs = Keypairs(manager)
        self.tokens = Tokens(manager)
