"""API tokens: Bearer credentials for the gateway, each acting as one keypair (DESIGN.md §5).
Only a hash of a token is stored."""

from __future__ import annotations

import secrets
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.gateway_api import ApiTokenInfo

from ..models import ApiTokenRow, KeypairRow

TOKEN_ID_PREFIX = "tok-"


def _info(row: ApiTokenRow) -> ApiTokenInfo:
    return ApiTokenInfo(
        id=row.id,
        access_key=row.access_key,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


class ApiTokenRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self,
        *,
        access_key: str,
        token_hash: str,
        name: str | None,
        expires_in: timedelta | None,
    ) -> ApiTokenInfo | None:
        """A new token row for the keypair (``None`` when there is no such keypair); it expires
        ``expires_in`` after its creation on the database's clock, or never."""
        async with self._sessions.begin() as session:
            # the key-share lock keeps the keypair from being deleted before the insert
            keypair = await session.scalar(
                sa.select(KeypairRow.access_key)
                .where(KeypairRow.access_key == access_key)
                .with_for_update(key_share=True)
            )
            if keypair is None:
                return None
            row = ApiTokenRow(
                id=TOKEN_ID_PREFIX + secrets.token_hex(8),
                access_key=access_key,
                token_hash=token_hash,
                name=name,
                expires_at=None if expires_in is None else sa.func.now() + expires_in,
            )
            session.add(row)
            await session.flush()
            await session.refresh(row)
            return _info(row)

    async def list_all(self) -> list[ApiTokenInfo]:
        async with self._sessions() as session:
            rows = await session.scalars(
                sa.select(ApiTokenRow).order_by(ApiTokenRow.created_at, ApiTokenRow.id)
            )
            return [_info(row) for row in rows]

    async def delete(self, token_id: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(sa.delete(ApiTokenRow).where(ApiTokenRow.id == token_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]
