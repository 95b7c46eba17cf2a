"""The data plane's Redis client, whose connections pack commands with hiredis's C packer.

redis-py's asyncio connection packs every command in Python (~0.5 µs per argument); a commit or
a branch end passes dozens of arguments, so on the data plane's hot path packing costs more than
the command's own work in Redis. hiredis (already the reply parser) packs the same bytes about
seven times faster. Arguments it would encode differently from redis-py (floats, whose text
redis-py takes from ``repr``; memoryviews, booleans) go through redis-py's own packer.
"""

from __future__ import annotations

import socket
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection


def _packable(args: tuple[Any, ...]) -> bool:
    for arg in args:
        kind = type(arg)
        if kind is not bytes and kind is not str and kind is not int:
            return False
    return True


class HiredisPackedConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # a command name with literal arguments ("XINFO GROUPS") is sent as separate words
        if isinstance(first, str) and " " in first:
            args = (*first.split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        if self.encoder.encoding == "utf-8" and _packable(args):
            return [hiredis.pack_command(args)]
        return super().pack_command(*args)


def redis_client(url: str) -> Redis:
    """A client for the data plane: bytes in and out, and TCP keepalive with a health check so
    that a connection whose peer vanished (no FIN) is noticed within half a minute; commands
    are packed by hiredis on TCP connections."""
    options: dict[str, Any] = {}
    if url.startswith(("redis://", "rediss://")):  # TCP: a unix:// connection takes no keepalive
        options["socket_keepalive"] = True
        options["socket_keepalive_options"] = {
            socket.TCP_KEEPIDLE: 10,
            socket.TCP_KEEPINTVL: 5,
            socket.TCP_KEEPCNT: 3,
        }
    if url.startswith("redis://"):
        options["connection_class"] = HiredisPackedConnection
    return Redis.from_url(url, **options, decode_responses=False, health_check_interval=15)
