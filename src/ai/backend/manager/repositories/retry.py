"""Retrying a transaction that PostgreSQL aborted to break a deadlock (SQLSTATE 40P01) or a
serialization conflict (40001): the other transaction went through, so trying again works."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__name__))

T = TypeVar("T")
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 3


def _sqlstate(error: DBAPIError) -> str | None:
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)


async def retry_on_deadlock(transaction: Callable[[], Awaitable[T]]) -> T:
    """Run ``transaction`` (one whole transaction), again when it was chosen as a deadlock's
    or a serialization conflict's victim, up to three attempts."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await transaction()
        except DBAPIError as e:
            if _sqlstate(e) not in RETRYABLE_SQLSTATES or attempt == ATTEMPTS:
                raise
            log.info(
                "transaction aborted by PostgreSQL ({}); attempt {}", _sqlstate(e), attempt + 1
            )
    raise AssertionError("unreachable")
