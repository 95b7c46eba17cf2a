"""Who may call the gateway: keypairs (HMAC) and API tokens (Bearer), read from the tables the
manager writes (``ai.backend.common.db.credentials``). Read only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.db.credentials import ApiTokenRow, KeypairRow


@dataclass(frozen=True)
class KeypairCredential:
    """An active keypair and the secret its HMAC signatures are checked with."""

    access_key: str
    secret_key: str
    role: str
    is_admin: bool


@dataclass(frozen=True)
class TokenCredential:
    """An unexpired API token of an active keypair (the token itself is never stored)."""

    token_id: str
    access_key: str
    role: str
    is_admin: bool
    expires_at: datetime | None


class CredentialRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def keypair(self, access_key: str) -> KeypairCredential | None:
        """The active keypair with this access key, or ``None``."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    sa.select(
                        KeypairRow.access_key,
                        KeypairRow.secret_key,
                        KeypairRow.role,
                        KeypairRow.is_admin,
                    ).where(KeypairRow.access_key == access_key, KeypairRow.is_active)
                )
            ).one_or_none()
        if row is None:
            return None
        return KeypairCredential(row.access_key, row.secret_key, row.role, row.is_admin)

    async def token(self, token_hash: str, *, now: datetime) -> TokenCredential | None:
        """The token with this hash if it has not expired by ``now`` and its keypair is active,
        or ``None`` (a deleted keypair took its tokens with it)."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    sa.select(
                        ApiTokenRow.id,
                        ApiTokenRow.expires_at,
                        KeypairRow.access_key,
                        KeypairRow.role,
                        KeypairRow.is_admin,
                    )
                    .join(KeypairRow, KeypairRow.access_key == ApiTokenRow.access_key)
                    .where(
                        ApiTokenRow.token_hash == token_hash,
                        KeypairRow.is_active,
                        sa.or_(ApiTokenRow.expires_at.is_(None), ApiTokenRow.expires_at > now),
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return TokenCredential(row.id, row.access_key, row.role, row.is_admin, row.expires_at)
