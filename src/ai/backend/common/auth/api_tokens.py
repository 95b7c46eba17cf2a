"""API tokens (``Authorization: Bearer bai_…``): how they are made and how they are stored.
Pure functions, no I/O. Only the SHA-256 hex digest of a token is ever stored."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "bai_"
BEARER_SCHEME = "Bearer"


def new_token() -> str:
    """A fresh token: ``bai_`` and 32 random bytes, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database keeps of a token (and looks it up by)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive),
    ``None`` for another scheme. An empty token is returned as ``""``."""
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != BEARER_SCHEME.lower():
        return None
    return rest.strip()
