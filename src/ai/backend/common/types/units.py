"""Human-friendly sizes (``512m``, ``2g``) and durations (``30s``, ``5m``, ``1h30m``).

Sizes are binary (``1k`` = 1024 bytes), like Backend.AI's ``BinarySize``; an optional ``i``
and/or ``b`` suffix is accepted (``512MiB``, ``2gb``). Durations accept ``ms``, ``s``, ``m``,
``h`` and ``d`` parts, or a plain number of seconds.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_SIZE_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(?:i?b)?\s*$", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_size(value: int | str | Decimal) -> int:
    """``"512m"`` → 536870912. Raises ``ValueError`` for negatives, fractions of a byte or
    unknown suffixes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 512m or a number of bytes, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"expected a size like 512m or a number of bytes, got {value!r}")
    match = _SIZE_PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"invalid size {value!r}: expected bytes or a number with a k/m/g/t/p suffix"
        )
    number = Decimal(match.group(1)) * (1024 ** _SIZE_UNITS[match.group(2).lower()])
    if number != number.to_integral_value():
        raise ValueError(f"invalid size {value!r}: not a whole number of bytes")
    return int(number)


def format_size(num_bytes: int) -> str:
    """The shortest exact spelling: 536870912 → ``"512m"``, 1000 → ``"1000"``."""
    for suffix, power in sorted(_SIZE_UNITS.items(), key=lambda item: -item[1]):
        unit = 1024**power
        if power and num_bytes and num_bytes % unit == 0:
            return f"{num_bytes // unit}{suffix}"
    return str(num_bytes)


def parse_duration(value: int | float | str | timedelta) -> timedelta:
    """``"1h30m"`` → 90 minutes; a number is seconds. Raises ``ValueError`` when negative or
    malformed."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError("expected a duration like 30s or a number of seconds, got a boolean")
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = timedelta(seconds=float(Decimal(text)))
        except InvalidOperation:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts).lower() != text.lower():
                raise ValueError(
                    f"invalid duration {value!r}: expected e.g. 500ms, 30s, 5m, 1h30m or seconds"
                ) from None
            millis = sum(Decimal(n) * _DURATION_UNITS_MS[u.lower()] for n, u in parts)
            result = timedelta(milliseconds=float(millis))
    else:
        raise ValueError(f"expected a duration like 30s or a number of seconds, got {value!r}")
    if result < timedelta(0):
        raise ValueError(f"duration must not be negative, got {value!r}")
    return result


def format_duration(value: timedelta) -> str:
    """The compact spelling that parses back to the same value: 90 min → ``"1h30m"``."""
    millis = round(value.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("d", "h", "m", "s", "ms"):
        count, millis = divmod(millis, _DURATION_UNITS_MS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _validate_size(value: Any) -> int:
    return parse_size(value)


def _validate_duration(value: Any) -> timedelta:
    return parse_duration(value)


BinarySize = Annotated[
    int,
    BeforeValidator(_validate_size),
    PlainSerializer(format_size, return_type=str, when_used="json"),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["512m", "2g", 1048576]}),
]
"""A number of bytes, written as ``512m`` / ``2g`` or an integer; JSON output is the short form."""

Duration = Annotated[
    timedelta,
    BeforeValidator(_validate_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": ["string", "number"], "examples": ["30s", "5m", "1h30m", 2.5]}),
]
"""A non-negative time span, written as ``30s`` / ``5m`` or seconds; JSON output is ``30s``."""
