"""Who may read this agent's API: requests signed (DESIGN.md §6) with the agent's own keypair,
``[manager] access_key`` / ``secret_key``. The manager knows every keypair's secret, so it signs
what it asks an agent with the keypair the agent heartbeats with; nobody else holds it."""

from __future__ import annotations

from datetime import datetime

from ai.backend.common.auth.hmac_signing import (
    SignatureError,
    SignedParts,
    parse_authorization,
    verify_signature,
)

from ..errors import InvalidSignature


class RequestVerifier:
    def __init__(self, *, access_key: str | None, secret_key: str | None) -> None:
        self._access_key = access_key
        self._secret_key = secret_key

    def verify(self, *, authorization: str | None, parts: SignedParts, now: datetime) -> None:
        """Return when the request is signed with this agent's keypair; raise
        :class:`InvalidSignature` (401) saying why otherwise."""
        if self._access_key is None or self._secret_key is None:
            raise InvalidSignature("this agent has no [manager] keypair: its API is closed")
        if not authorization:
            raise InvalidSignature("missing Authorization header (sign the request with HMAC)")
        if not parts.date:
            raise InvalidSignature("missing Date / X-BackendAI-Date header")
        try:
            parsed = parse_authorization(authorization)
            if parsed.access_key != self._access_key:
                raise InvalidSignature(
                    f"access key {parsed.access_key!r} is not this agent's keypair"
                )
            verify_signature(
                authorization=parsed, secret_key=self._secret_key, parts=parts, now=now
            )
        except SignatureError as e:
            raise InvalidSignature(str(e)) from None
