"""Which jobs are cancelled: the set ``bai:cancel``, read once at start and then followed
through the pub/sub channel of the same name, so that checking an envelope costs no round
trip."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ai.backend.common.aio import cancel_and_wait
from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


class CancelledJobs:
    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key
        self._ids: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ids

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="cancel-watcher")
        await self._subscribed.wait()

    async def close(self) -> None:
        await cancel_and_wait(self._task)

    async def _follow(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._key)
                    # read the set after subscribing: nothing published in between is missed
                    members = await self._redis.smembers(self._key)
                    self._ids.update(m.decode() if isinstance(m, bytes) else m for m in members)
                    self._subscribed.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            self._ids.add(data.decode() if isinstance(data, bytes) else data)
            except RedisError as e:
                log.warning("lost the cancel channel ({}); resubscribing", e)
                self._subscribed.set()
                await asyncio.sleep(1.0)  # reconnect backoff
