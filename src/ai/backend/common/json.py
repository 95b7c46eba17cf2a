"""Fast JSON for the wire: orjson, producing and accepting UTF-8 bytes.

Non-string dictionary keys and NaN are rejected like the standard library's strict mode would;
datetimes serialize as RFC 3339 with a ``Z`` suffix for UTC. Integers beyond 64 bits, which
orjson cannot write but a payload parsed from JSON may hold, are written by the standard
library instead.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError

_OPTIONS = orjson.OPT_UTC_Z


def dumps(value: Any) -> bytes:
    """Serialize ``value`` to compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # e.g. an integer beyond 64 bits; anything else fails here too, with the stdlib's error
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()


def dumps_str(value: Any) -> str:
    return orjson.dumps(value, option=_OPTIONS).decode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; raises :class:`JSONDecodeError` (a ``ValueError``) on malformed input."""
    return orjson.loads(data)
