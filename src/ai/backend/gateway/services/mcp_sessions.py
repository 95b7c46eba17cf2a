"""Legacy MCP sessions (revisions up to 2025-11-25), kept in Redis so that any gateway replica
serves any request of a session, and the in-flight ``tools/call`` requests of each session, so
that ``notifications/cancelled {requestId}`` cancels the right job wherever it lands.

Keys (prefix configurable, default ``bai:``), both expiring ``ttl`` after the session's last
use:

- ``{prefix}mcp:session:{id}``: JSON ``{"protocol_version", "owner", "created_at"}``.
- ``{prefix}mcp:session:{id}:requests``: hash, JSON-encoded request id → ``pending`` (the call
  is being started), ``cancelled`` (cancelled before its job existed) or the job id.

Modern (2026-07-28) requests are stateless and never touch this."""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from redis.asyncio import Redis

from ai.backend.common.json import JSONDecodeError, dumps, dumps_str, loads
from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__name__))

DEFAULT_SESSION_TTL: Final = 3600.0
"""Seconds a session lives after its last request (a client that comes back later
re-initializes after its 404)."""

PENDING: Final = "pending"
CANCELLED: Final = "cancelled"
_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")

# Attach a job to a request, unless the request was cancelled first: 1 attached, 0 cancelled,
# -1 the request is not there (its session was deleted or expired meanwhile: nothing is written,
# so the requests hash is never recreated without its expiry).
_ATTACH_JOB: Final = """
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then
  return -1
end
if state == ARGV[3] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# Cancel a request: a pending one is marked (its job is cancelled as soon as it exists); the
# job id of a started one is returned; an unknown one is ignored.
_CANCEL_REQUEST: Final = """
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then
  return false
end
if state == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return false
end
if state == ARGV[3] then
  return false
end
return state
"""


class Attached(IntEnum):
    """What :meth:`McpSessionService.attach_job` did."""

    ATTACHED = 1
    CANCELLED = 0  # the call was cancelled before its job existed
    GONE = -1  # the call's session was deleted or expired: not recorded


@dataclass(frozen=True)
class McpSession:
    id: str
    protocol_version: str
    owner: str | None  # the access key that opened it (None without authentication)
    created_at: float


def is_session_id(value: str) -> bool:
    """Whether ``value`` can be a session id this service minted (others are not looked up)."""
    return _SESSION_ID.fullmatch(value) is not None


class McpSessionService:
    def __init__(self, redis: Redis, *, prefix: str, ttl: float = DEFAULT_SESSION_TTL) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = int(ttl * 1000)
        self._attach_job = redis.register_script(_ATTACH_JOB)
        self._cancel_request = redis.register_script(_CANCEL_REQUEST)

    def _session_key(self, session_id: str) -> str:
        return f"{self._prefix}mcp:session:{session_id}"

    def _requests_key(self, session_id: str) -> str:
        return f"{self._prefix}mcp:session:{session_id}:requests"

    async def create(self, *, protocol_version: str, owner: str | None) -> McpSession:
        session = McpSession(secrets.token_hex(16), protocol_version, owner, time.time())
        record = {
            "protocol_version": protocol_version,
            "owner": owner,
            "created_at": session.created_at,
        }
        await self._redis.set(self._session_key(session.id), dumps(record), px=self._ttl_ms)
        return session

    async def get(self, session_id: str) -> McpSession | None:
        """The session, its expiry renewed; ``None`` for an unknown or expired one."""
        if not is_session_id(session_id):
            return None
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.getex(self._session_key(session_id), px=self._ttl_ms)
            pipe.pexpire(self._requests_key(session_id), self._ttl_ms)
            raw, _ = await pipe.execute()
        if raw is None:
            return None
        try:
            record: dict[str, Any] = loads(raw)
            return McpSession(
                session_id,
                str(record["protocol_version"]),
                record.get("owner"),
                float(record.get("created_at", 0.0)),
            )
        except (JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("MCP session {} has an unreadable record; treated as unknown", session_id)
            return None

    async def delete(self, session_id: str) -> bool:
        """End a session; ``False`` if it was unknown or had expired."""
        if not is_session_id(session_id):
            return False
        deleted = await self._redis.delete(
            self._session_key(session_id), self._requests_key(session_id)
        )
        return bool(deleted)

    async def begin_request(self, session_id: str, request_id: str | int) -> None:
        """Record an in-flight call before its job exists (so an early cancel is not lost)."""
        key = self._requests_key(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, dumps_str(request_id), PENDING)
            pipe.pexpire(key, self._ttl_ms)
            await pipe.execute()

    async def attach_job(self, session_id: str, request_id: str | int, job_id: str) -> Attached:
        """Bind the call's job to it: :attr:`Attached.CANCELLED` when the call was cancelled in
        the meantime (the caller then cancels the job), :attr:`Attached.GONE` when the call is
        no longer recorded (its session was deleted or expired: nothing is written)."""
        answer = await self._attach_job(
            keys=[self._requests_key(session_id)],
            args=[dumps_str(request_id), job_id, CANCELLED],
        )
        return Attached(int(answer))

    async def end_request(self, session_id: str, request_id: str | int) -> None:
        await self._redis.hdel(self._requests_key(session_id), dumps_str(request_id))

    async def cancel_request(self, session_id: str, request_id: str | int) -> str | None:
        """The job to cancel for ``notifications/cancelled {requestId}``: the call's job id, or
        ``None`` when the call is unknown, finished, or has no job yet (then it is marked, and
        :meth:`attach_job` answers :attr:`Attached.CANCELLED`)."""
        job_id = await self._cancel_request(
            keys=[self._requests_key(session_id)],
            args=[dumps_str(request_id), PENDING, CANCELLED],
        )
        if job_id is None:
            return None
        return job_id.decode() if isinstance(job_id, bytes) else str(job_id)
