"""Fast JSON for the wire: orjson, producing and accepting UTF-8 bytes.

Non-string dictionary keys and NaN are rejected like the standard library's strict mode would;
datetimes serialize as RFC 3339 with a ``Z`` suffix for UTC.
"""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError

_OPTIONS = orjson.OPT_UTC_Z


def dumps(value: Any) -> bytes:
    """Serialize ``value`` to compact UTF-8 JSON bytes."""
    return orjson.dumps(value, option=_OPTIONS)


def dumps_str(value: Any) -> str:
    return orjson.dumps(value, option=_OPTIONS).decode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; raises :class:`JSONDecodeError` (a ``ValueError``) on malformed input."""
    return orjson.loads(data)
