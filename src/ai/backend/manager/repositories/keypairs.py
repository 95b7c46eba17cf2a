"""Keypairs: the credentials of users, admins and agents (DESIGN.md §3, §6)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.manager_api import KeypairCreated, KeypairInfo, KeypairRoleName

from ..models import KeypairRow

ACCESS_KEY_PREFIX = "AKIA"


def _info(row: KeypairRow) -> KeypairInfo:
    return KeypairInfo(
        access_key=row.access_key,
        user_name=row.user_name,
        role=row.role,
        is_admin=row.is_admin,
        is_active=row.is_active,
        rate_limit=row.rate_limit,
        created_at=row.created_at,
    )


@dataclass(frozen=True)
class Credential:
    """What verifying a signature needs: the keypair and its secret."""

    keypair: KeypairInfo
    secret_key: str


class KeypairRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self, *, user_name: str, role: KeypairRoleName, rate_limit: int | None = None
    ) -> KeypairCreated:
        secret_key = secrets.token_urlsafe(30)
        row = KeypairRow(
            access_key=ACCESS_KEY_PREFIX + secrets.token_hex(8).upper(),
            secret_key=secret_key,
            user_name=user_name,
            role=role,
            is_admin=role == "admin",
            is_active=True,
            rate_limit=rate_limit,
        )
        async with self._sessions.begin() as session:
            session.add(row)
            await session.flush()
            await session.refresh(row)
            info = _info(row)
        return KeypairCreated(**info.model_dump(), secret_key=secret_key)

    async def credential(self, access_key: str) -> Credential | None:
        """The active keypair with this access key and its secret, or ``None``."""
        async with self._sessions() as session:
            row = await session.scalar(
                sa.select(KeypairRow).where(
                    KeypairRow.access_key == access_key, KeypairRow.is_active
                )
            )
            return None if row is None else Credential(_info(row), row.secret_key)

    async def list_all(self) -> list[KeypairInfo]:
        async with self._sessions() as session:
            rows = await session.scalars(sa.select(KeypairRow).order_by(KeypairRow.created_at))
            return [_info(row) for row in rows]

    async def delete(self, access_key: str) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                sa.delete(KeypairRow).where(KeypairRow.access_key == access_key)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]
