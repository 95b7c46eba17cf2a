"""Who is calling: HMAC signature verification against the keypairs table (DESIGN.md §6)."""

from __future__ import annotations

from datetime import datetime

from ai.backend.common.auth.hmac_signing import (
    SignatureError,
    SignedParts,
    parse_authorization,
    verify_signature,
)
from ai.backend.common.dto.manager_api import KeypairInfo

from ..errors import AdminRequired, InvalidSignature, RoleNotAllowed
from ..repositories.keypairs import KeypairRepository


class AuthService:
    def __init__(self, keypairs: KeypairRepository) -> None:
        self._keypairs = keypairs

    async def authenticate(
        self, *, authorization: str | None, parts: SignedParts, now: datetime
    ) -> KeypairInfo:
        """The keypair that signed the request; :class:`InvalidSignature` (401) otherwise."""
        if not authorization:
            raise InvalidSignature("missing Authorization header (sign the request with HMAC)")
        if not parts.date:
            raise InvalidSignature("missing Date / X-BackendAI-Date header")
        try:
            parsed = parse_authorization(authorization)
            credential = await self._keypairs.credential(parsed.access_key)
            if credential is None:
                raise InvalidSignature(f"unknown or inactive access key {parsed.access_key!r}")
            verify_signature(
                authorization=parsed, secret_key=credential.secret_key, parts=parts, now=now
            )
        except SignatureError as e:
            raise InvalidSignature(str(e)) from None
        return credential.keypair


def require_admin(keypair: KeypairInfo) -> None:
    if not keypair.is_admin:
        raise AdminRequired("this route needs an admin keypair")


def require_user(keypair: KeypairInfo) -> None:
    """Agents' keypairs may only send heartbeats; gateways' may only read the model registry."""
    if keypair.role == "agent":
        raise RoleNotAllowed("an agent keypair may only send heartbeats")
    if keypair.role == "gateway":
        raise RoleNotAllowed("a gateway keypair may only read the model registry")


def require_registry_reader(keypair: KeypairInfo) -> None:
    """Users, admins and gateways read the model registry; agents do not."""
    if keypair.role != "gateway":
        require_user(keypair)


def require_agent(keypair: KeypairInfo) -> None:
    if keypair.role not in ("agent", "admin"):
        raise RoleNotAllowed("heartbeats need a keypair of role agent")
