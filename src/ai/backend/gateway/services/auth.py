"""Who is calling: a Bearer API token (issued by the manager for a keypair) or an HMAC signature
(DESIGN.md §5, §6), as ``auth.mode`` allows.

- ``token``: ``Authorization: Bearer <token>`` or ``BackendAI signMethod=HMAC-SHA256, …``;
- ``hmac``: HMAC signatures only;
- ``none``: no authentication, every caller is an admin (local development only).

A verified credential is trusted for ``auth.cache_ttl`` before it is read again: a revoked token
or a deleted keypair stops working within that time. An HMAC signature is still checked on every
request (with the cached secret); a token is looked up by its hash, never kept itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from ai.backend.common.auth.api_tokens import bearer_token, hash_token
from ai.backend.common.auth.hmac_signing import (
    SignatureError,
    SignedParts,
    parse_authorization,
    verify_signature,
)
from ai.backend.common.log import BraceStyleAdapter

from ..config import AuthMode, GatewayAuthConfig
from ..errors import Forbidden, Unauthorized
from ..repositories.credentials import CredentialRepository
from .jobs import Caller

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

NO_AUTH_CALLER: Final = Caller(access_key=None, role="admin", is_admin=True)
# keypairs that exist for machines, not callers: agents heartbeat to the manager, gateways read
# its model registry
REFUSED_ROLES: Final = frozenset({"agent", "gateway"})
MAX_CACHED: Final = 10_000


@dataclass(frozen=True)
class _Cached:
    caller: Caller
    until: float  # time.monotonic() when the credential is read again


@dataclass(frozen=True)
class _CachedKeypair(_Cached):
    secret_key: str


@dataclass(frozen=True)
class _CachedToken(_Cached):
    expires_at: datetime | None


CachedT = TypeVar("CachedT", bound=_Cached)


class AuthService:
    def __init__(self, credentials: CredentialRepository, config: GatewayAuthConfig) -> None:
        self._credentials: Final = credentials
        self._mode: Final = config.mode
        self._ttl: Final = config.cache_ttl.total_seconds()
        self._keypairs: dict[str, _CachedKeypair] = {}
        self._tokens: dict[str, _CachedToken] = {}

    def needs_body(self, authorization: str | None) -> bool:
        """Whether checking this request needs its body (HMAC signs the body; a Bearer
        request's body is left to the handler, unread)."""
        if self._mode == AuthMode.NONE or not authorization:
            return False
        return bearer_token(authorization) is None

    async def authenticate(
        self, *, authorization: str | None, parts: SignedParts, now: datetime
    ) -> Caller:
        """The caller, or :class:`Unauthorized` (401) naming what is wrong with the credentials;
        :class:`Forbidden` (403) for a keypair that exists for machines (agents, gateways)."""
        if self._mode == AuthMode.NONE:
            return NO_AUTH_CALLER
        if not authorization:
            expected = "'Bearer <token>' or an HMAC signature" if self._accepts_tokens else "HMAC"
            raise Unauthorized(f"missing Authorization header (authenticate with {expected})")
        token = bearer_token(authorization)
        if token is not None:
            if not self._accepts_tokens:
                raise Unauthorized(
                    "Bearer tokens are not accepted here (auth.mode = hmac): sign the request"
                    " with HMAC"
                )
            caller = await self._token_caller(token, now)
        else:
            caller = await self._signature_caller(authorization, parts, now)
        if caller.role in REFUSED_ROLES:
            log.info(
                "refused {} keypair {}: machines may not call the gateway",
                caller.role,
                caller.access_key,
            )
            raise Forbidden(f"a keypair of role {caller.role} may not call the gateway")
        return caller

    @property
    def _accepts_tokens(self) -> bool:
        return self._mode == AuthMode.TOKEN

    async def _token_caller(self, token: str, now: datetime) -> Caller:
        if not token:
            raise Unauthorized("empty Bearer token")
        token_hash = hash_token(token)
        cached = self._tokens.get(token_hash)
        if cached is None or cached.until <= time.monotonic():
            found = await self._credentials.token(token_hash, now=now)
            if found is None:
                self._tokens.pop(token_hash, None)
                raise Unauthorized("unknown, revoked or expired API token")
            cached = _CachedToken(
                caller=Caller(found.access_key, found.role, found.is_admin),
                expires_at=found.expires_at,
                until=time.monotonic() + self._ttl,
            )
            self._remember(self._tokens, token_hash, cached)
        if cached.expires_at is not None and cached.expires_at <= now:
            raise Unauthorized(f"API token expired at {cached.expires_at.isoformat()}")
        return cached.caller

    async def _signature_caller(
        self, authorization: str, parts: SignedParts, now: datetime
    ) -> Caller:
        try:
            parsed = parse_authorization(authorization)
        except SignatureError as e:
            message = f"{e}, or 'Bearer <token>'" if self._accepts_tokens else str(e)
            raise Unauthorized(message) from None
        if not parts.date:
            raise Unauthorized("missing Date / X-BackendAI-Date header")
        cached = self._keypairs.get(parsed.access_key)
        looked_up = cached is None or cached.until <= time.monotonic()
        if cached is None or looked_up:
            found = await self._credentials.keypair(parsed.access_key)
            if found is None:
                self._keypairs.pop(parsed.access_key, None)
                raise Unauthorized(f"unknown or inactive access key {parsed.access_key!r}")
            cached = _CachedKeypair(
                caller=Caller(found.access_key, found.role, found.is_admin),
                secret_key=found.secret_key,
                until=time.monotonic() + self._ttl,
            )
        try:
            verify_signature(
                authorization=parsed, secret_key=cached.secret_key, parts=parts, now=now
            )
        except SignatureError as e:
            raise Unauthorized(str(e)) from None
        if looked_up:
            self._remember(self._keypairs, parsed.access_key, cached)
        return cached.caller

    @staticmethod
    def _remember(cache: dict[str, CachedT], key: str, entry: CachedT) -> None:
        """Cache a verified credential; past :data:`MAX_CACHED` entries, the expired ones go
        first, then the oldest."""
        if len(cache) >= MAX_CACHED:
            now = time.monotonic()
            for stale in [k for k, v in cache.items() if v.until <= now]:
                del cache[stale]
            while len(cache) >= MAX_CACHED:
                del cache[next(iter(cache))]
        cache[key] = entry
