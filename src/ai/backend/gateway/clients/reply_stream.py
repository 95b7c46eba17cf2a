"""The reply stream ``bai:reply:{address}`` of one run of a gateway process (DESIGN.md §4.2;
the address is ``<gateway id>.<random>``, new for every run, named in the requests' ``reply-to``
header): the final outcomes of the requests it waits for (KServe inference), written by the
sidecars as terminal job events in the field ``ev``. Only this run reads it, so it reads without
a consumer group and trims what it has read in the same round trip as its next read; it deletes
the stream when it stops. The writers also bound it (approximate ``MAXLEN``) and let it expire
should its reader be gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.common.transport.redis_streams import EVENT_FIELD

START = "0-0"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _after(entry_id: str) -> str:
    """The smallest entry id above ``entry_id``."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


@dataclass(frozen=True, slots=True)
class ReplyEntry:
    entry_id: str
    body: bytes


class ReplyStreamClient:
    def __init__(self, redis: Redis, keys: RedisKeys, address: str) -> None:
        self._redis = redis
        self.key = keys.reply(address)

    async def read(
        self, after: str, *, block: float, count: int, trim_read: bool = True
    ) -> list[ReplyEntry]:
        """Up to ``count`` replies newer than ``after``, waiting up to ``block`` seconds for
        the first; with ``trim_read``, what was read up to ``after`` is deleted first, in the
        same round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            if trim_read and after != START:
                pipe.xtrim(self.key, minid=_after(after), approximate=False)
            pipe.xread({self.key: after}, count=count, block=max(int(block * 1000), 1))
            answers: list[Any] = await pipe.execute()
        entries: list[ReplyEntry] = []
        for _stream, items in answers[-1] or ():
            for entry_id, fields in items:
                entries.append(ReplyEntry(_text(entry_id), fields.get(EVENT_FIELD, b"")))
        return entries

    async def delete(self) -> None:
        await self._redis.delete(self.key)
