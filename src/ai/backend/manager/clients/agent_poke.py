"""Tell agents to heartbeat now (``POST {addr}/v1/poke``) when their replicas changed, so that a
placement or a drain reaches them without waiting for their next period. Best effort: an agent
that does not answer learns the news at its next heartbeat anyway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import aiohttp

from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__name__))

POKE_TIMEOUT = aiohttp.ClientTimeout(total=1.0)


class AgentPoker:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def poke(self, addrs: Iterable[str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=POKE_TIMEOUT)
        session = self._session
        await asyncio.gather(*(self._poke_one(session, addr) for addr in set(addrs)))

    async def _poke_one(self, session: aiohttp.ClientSession, addr: str) -> None:
        try:
            async with session.post(f"{addr.rstrip('/')}/v1/poke") as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            log.debug("poke of agent at {} failed: {}", addr, e)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
