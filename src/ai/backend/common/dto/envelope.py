"""Envelope v1 (DESIGN.md §4.1): the unit of work that travels along a route of actors.

Headers the data plane itself reads (all others are the user's, carried along unread):

* ``reply-to: <address>`` (:data:`REPLY_TO_HEADER`; a gateway run's ``<gateway id>.<run>``):
  request-reply. The envelope's final outcome is also written, as a terminal job event
  (``kind`` ``succeeded`` with ``result``, or ``failed`` with ``error``; ``job_id`` = the key
  the caller waits on), to the stream
  ``bai:reply:{address}`` of the gateway run that waits for it. At least once: a duplicate reply
  is harmless, the gateway ignores replies it no longer waits for.
* ``events: off`` (:data:`EVENTS_HEADER` = :data:`EVENTS_OFF`): no job events for this
  envelope (request-reply traffic such as KServe inference, which is no job of record). An
  envelope with both headers that ends without a fan-out is answered by the sidecar of the actor
  where it ends, in the commit that acknowledges it: it never reaches the crew.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from .base import RESERVED_ACTOR_NAMES, ActorName, StrictModel

ENVELOPE_VERSION: Final = 1
# a user's route holds at most MAX_ROUTE_ACTORS - 1 actors: the sidecar appends a crew actor
MAX_ROUTE_ACTORS: Final = 65
MAX_FAN_OUT_DEPTH: Final = 32
MAX_MODEL_NAME: Final = 256

REPLY_TO_HEADER: Final = "reply-to"
EVENTS_HEADER: Final = "events"
EVENTS_OFF: Final = "off"


def new_envelope_id() -> str:
    return uuid.uuid4().hex


def child_envelope_id(parent_id: str, index: int) -> str:
    """The id of fan-out child ``index`` of envelope ``parent_id``. Derived, not random: a parent
    processed twice has the same children, which are then recognised as duplicates."""
    return hashlib.blake2b(f"{parent_id}/{index}".encode(), digest_size=16).hexdigest()


def check_user_route(actors: list[str]) -> None:
    """``ValueError`` for a route a user may not write: one naming the crew, or too long."""
    reserved = [name for name in actors if name in RESERVED_ACTOR_NAMES]
    if reserved:
        raise ValueError(f"route must not name the crew actors: {', '.join(reserved)}")
    if len(actors) >= MAX_ROUTE_ACTORS:
        raise ValueError(f"route: at most {MAX_ROUTE_ACTORS - 1} actors")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Route(StrictModel):
    """The actors an envelope visits, and the index of the one that must process it now."""

    actors: list[ActorName] = Field(min_length=1, max_length=MAX_ROUTE_ACTORS)
    current: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _current_in_range(self) -> Route:
        if self.current >= len(self.actors):
            raise ValueError(
                f"route.current {self.current} is past the last actor (route has"
                f" {len(self.actors)})"
            )
        return self

    @classmethod
    def for_user(cls, actors: list[str]) -> Route:
        """A route written by a user: the crew's names may not appear in it."""
        check_user_route(actors)
        return cls(actors=actors, current=0)

    @property
    def current_actor(self) -> str:
        return self.actors[self.current]

    @property
    def is_last(self) -> bool:
        return self.current == len(self.actors) - 1

    def advanced(self) -> Route:
        """The route pointing at the next actor; raises ``IndexError`` past the end."""
        if self.is_last:
            raise IndexError("route has no next actor")
        return Route(actors=self.actors, current=self.current + 1)


class ModelRef(StrictModel):
    """The model of a multi-model ``App`` that an envelope is for (KServe inference);
    ``version`` ``None``: the app's latest."""

    name: str = Field(min_length=1, max_length=MAX_MODEL_NAME)
    version: str | None = Field(default=None, min_length=1, max_length=MAX_MODEL_NAME)


class Envelope(StrictModel):
    """What travels in the stream field ``e`` as JSON (DESIGN.md §4.1)."""

    v: Literal[1] = ENVELOPE_VERSION
    id: str = Field(default_factory=new_envelope_id, min_length=1, max_length=64)
    job_id: str | None = Field(default=None, max_length=64)
    parent_id: str | None = Field(default=None, max_length=64)
    route: Route
    payload: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    attempt: int = Field(default=1, ge=1)
    deadline_at: AwareDatetime | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)
    # Fan-out position: child i of a fan-out appends i; results of the job are ordered by it.
    branch: list[int] = Field(default_factory=list, max_length=MAX_FAN_OUT_DEPTH)
    # Set only on envelopes bound for ``error-end``: what failed, where, at which attempt.
    error: dict[str, Any] | None = None
    # The model of a multi-model App this envelope is for (DESIGN.md §5a); None: the actor's
    # only handler or model.
    model: ModelRef | None = None

    @property
    def job_key(self) -> str:
        """The job this envelope belongs to; an envelope published without a job is its own."""
        return self.job_id or self.id

    @field_validator("id", "job_id", "parent_id")
    @classmethod
    def _printable_id(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("ids must be printable text")
        return value

    @model_validator(mode="after")
    def _child_names_its_parent(self) -> Envelope:
        if self.branch and not self.parent_id:
            raise ValueError("an envelope with a branch (a fan-out child) must have parent_id")
        return self

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.deadline_at is not None and (now or utcnow()) >= self.deadline_at

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()

    @classmethod
    def from_json_bytes(cls, data: bytes | str) -> Envelope:
        """Parse and validate; raises ``pydantic.ValidationError`` for malformed input."""
        return cls.model_validate_json(data)
