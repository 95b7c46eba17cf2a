"""Queue depth of actors' streams for the autoscaler (DESIGN.md §4.2, §8).

The depth of an actor is what its replicas still have to do: the entries of its stream not yet
delivered to its consumer group (the group's ``lag``) plus those delivered but not acknowledged
(``pending``). Redis reports no ``lag`` before 7.0, or when entries in the undelivered range were
deleted; then the entries after the group's ``last-delivered-id`` are counted instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.common.transport.stream_depth import group_lag


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_missing_stream(error: BaseException) -> bool:
    return isinstance(error, ResponseError) and "no such key" in str(error).lower()


def _group_named(groups: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    for group in groups:
        if _text(group.get("name")) == name:
            return group
    return None


async def queue_depths(redis: Redis, prefix: str, actor_names: Sequence[str]) -> dict[str, int]:
    """``{actor: lag + pending}`` for each actor, in one pipelined round trip (plus one XRANGE
    per lag-less group). A missing stream counts 0. A stream without the actor's group counts
    every entry: groups are created at id 0 (``MessageTransport.ensure_queue``), so the first
    replica will receive them all; an actor at zero replicas that never had one is activated."""
    keys = RedisKeys(prefix)
    names = list(dict.fromkeys(actor_names))
    if not names:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.xinfo_groups(keys.actor_stream(name))
            pipe.xlen(keys.actor_stream(name))
        replies = await pipe.execute(raise_on_error=False)
    depths: dict[str, int] = {}
    for index, name in enumerate(names):
        groups_reply, length_reply = replies[2 * index], replies[2 * index + 1]
        if isinstance(groups_reply, BaseException):
            if _is_missing_stream(groups_reply):
                depths[name] = 0
                continue
            raise groups_reply
        group = _group_named(groups_reply, name)
        if group is None:
            depths[name] = int(length_reply)
            continue
        pending = int(group.get("pending") or 0)
        depths[name] = await group_lag(redis, keys.actor_stream(name), group) + pending
    return depths
