"""The envelope on the data plane's hot path: msgspec structs with the wire format of
:class:`~.envelope.Envelope` (DESIGN.md §4.1), decoded and encoded several times faster.

:class:`Envelope` (Pydantic) stays the public type and the judge of what is valid:
:func:`decode_envelope` tries msgspec first, whose constraints are the same or stricter, and hands
anything msgspec refuses to Pydantic, which either accepts it (a form msgspec does not take,
e.g. ``"attempt": "2"``) or raises its ``ValidationError`` with the usual message. The JSON both
write is interchangeable: the same fields in the same order, equal values after decoding
(tests/common/test_envelope_wire.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .base import RESERVED_ACTOR_NAMES
from .envelope import (
    EVENTS_HEADER,
    EVENTS_OFF,
    MAX_FAN_OUT_DEPTH,
    MAX_MODEL_NAME,
    MAX_ROUTE_ACTORS,
    REPLY_TO_HEADER,
    Envelope,
    new_envelope_id,
    utcnow,
)

_ACTOR_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"  # check_actor_name's

WireActorName = Annotated[str, Meta(pattern=_ACTOR_PATTERN)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]


class WireRoute(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    actors: Annotated[list[WireActorName], Meta(min_length=1, max_length=MAX_ROUTE_ACTORS)]
    current: Annotated[int, Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        if self.current >= len(self.actors):
            raise ValueError("route.current is past the last actor")

    @property
    def current_actor(self) -> str:
        return self.actors[self.current]

    @property
    def is_last(self) -> bool:
        return self.current == len(self.actors) - 1

    def advanced(self) -> WireRoute:
        if self.is_last:
            raise IndexError("route has no next actor")
        return WireRoute(self.actors, self.current + 1)

    def without_crew(self) -> list[str]:
        return [a for a in self.actors if a not in RESERVED_ACTOR_NAMES]


class WireModelRef(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, Meta(min_length=1, max_length=MAX_MODEL_NAME)]
    version: Annotated[str, Meta(min_length=1, max_length=MAX_MODEL_NAME)] | None = None


class WireEnvelope(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The fields of :class:`Envelope`, in its order (the order they are written in)."""

    v: Literal[1] = 1
    id: Annotated[str, Meta(min_length=1, max_length=64)] = msgspec.field(
        default_factory=new_envelope_id
    )
    job_id: Annotated[str, Meta(max_length=64)] | None = None
    parent_id: Annotated[str, Meta(max_length=64)] | None = None
    route: WireRoute
    payload: Any = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    attempt: Annotated[int, Meta(ge=1)] = 1
    deadline_at: AwareDatetime | None = None
    created_at: AwareDatetime = msgspec.field(default_factory=utcnow)
    branch: Annotated[list[int], Meta(max_length=MAX_FAN_OUT_DEPTH)] = msgspec.field(
        default_factory=list
    )
    error: dict[str, Any] | None = None
    model: WireModelRef | None = None

    def __post_init__(self) -> None:
        for value in (self.id, self.job_id, self.parent_id):
            if value is not None and not value.isprintable():
                raise ValueError("ids must be printable text")
        if self.branch and not self.parent_id:
            raise ValueError("an envelope with a branch (a fan-out child) must have parent_id")

    @property
    def job_key(self) -> str:
        return self.job_id or self.id

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.deadline_at is not None and (now or datetime.now(UTC)) >= self.deadline_at

    @property
    def reply_to(self) -> str | None:
        """The gateway waiting for this envelope's outcome (header ``reply-to``), if any."""
        return self.headers.get(REPLY_TO_HEADER) or None

    @property
    def events_off(self) -> bool:
        """No job events for this envelope (header ``events: off``)."""
        return self.headers.get(EVENTS_HEADER) == EVENTS_OFF

    def replace(self, **changes: Any) -> WireEnvelope:
        return msgspec.structs.replace(self, **changes)

    def to_json_bytes(self) -> bytes:
        return _encode(self)

    def to_model(self) -> Envelope:
        return Envelope.model_validate_json(_encode(self))

    @classmethod
    def from_model(cls, envelope: Envelope) -> WireEnvelope:
        return decode_envelope(envelope.to_json_bytes())


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(WireEnvelope)


def _encode(envelope: WireEnvelope) -> bytes:
    return _encoder.encode(envelope)


# Where msgspec and Pydantic part ways, Pydantic decides: nesting deeper than Pydantic's limit
# (about 200 levels; msgspec goes deeper), datetimes with more than six fractional digits
# (msgspec rounds them, Pydantic truncates) and text that is not UTF-8. The bracket count is a
# cheap bound of the depth; only above it is the decoded value's depth measured.
_MAX_DEPTH = 150
_BEYOND_MICROSECONDS = re.compile(rb"[Tt ]\d\d:\d\d:\d\d[.,]\d{7}")


def _nested_deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _shallow_enough(raw: bytes, envelope: WireEnvelope) -> bool:
    if raw.count(b"[") + raw.count(b"{") <= _MAX_DEPTH:
        return True
    return not any(
        _nested_deeper_than(part, _MAX_DEPTH - 2) for part in (envelope.payload, envelope.error)
    )


def decode_envelope(data: bytes | str) -> WireEnvelope:
    """Parse and validate an envelope; raises ``pydantic.ValidationError`` (or ``ValueError``)
    for what :class:`Envelope` refuses, with its message."""
    raw = data if isinstance(data, bytes) else data.encode(errors="surrogatepass")
    if _BEYOND_MICROSECONDS.search(raw) is None:
        try:
            envelope = _decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass  # RecursionError: nested beyond what msgspec decodes
        else:
            if _shallow_enough(raw, envelope):
                return envelope
    decoded = Envelope.from_json_bytes(data)  # Pydantic judges: its error, or its value
    return _decoder.decode(decoded.to_json_bytes())
