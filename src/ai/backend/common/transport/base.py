"""The transport interface the data plane is written against.

Vocabulary: a *queue* is an actor's inbox, named after the actor; its replicas are the
*consumers* of one consumer group, so each message goes to one replica. A :class:`Delivery` stays
pending until acknowledged; a consumer that dies leaves it pending and another one reclaims it
with :meth:`MessageTransport.claim_idle`. Delivery is at-least-once: an :class:`Outcome` writes
what a delivery turned into (successors, a delayed retry, a dead letter) *and* acknowledges it in
one atomic step, so nothing is lost between the two.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a consumer; acknowledge it (through an :class:`Outcome`) once its
    outcome is written."""

    queue: str
    message_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """``lag``: messages not yet delivered to any consumer; ``pending``: delivered but not yet
    acknowledged. Autoscaling uses ``total``."""

    lag: int
    pending: int

    @property
    def total(self) -> int:
        return self.lag + self.pending


@dataclass(frozen=True, slots=True)
class DelayedMessage:
    """A message to publish to ``queue`` once the wall clock reaches ``due_at`` (Unix time)."""

    queue: str
    body: bytes
    due_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The original message of a delivery that will never succeed, with its last error."""

    queue: str
    body: bytes
    error: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    entry_id: str
    queue: str
    body: bytes
    error: Mapping[str, Any]
    at: float


@dataclass(slots=True)
class Outcome:
    """Everything a batch of deliveries turned into, committed atomically with their acks."""

    publish: list[tuple[str, bytes]] = field(default_factory=list)
    delayed: list[DelayedMessage] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    acks: list[Delivery] = field(default_factory=list)
    # (job id, delta) for the open-branch counters of fan-outs (DESIGN.md §4.1)
    branch_deltas: list[tuple[str, int]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.publish or self.delayed or self.dead_letters or self.acks or self.branch_deltas
        )

    def merge(self, other: Outcome) -> None:
        """Add ``other``'s writes to this one (to commit several deliveries at once)."""
        self.publish += other.publish
        self.delayed += other.delayed
        self.dead_letters += other.dead_letters
        self.acks += other.acks
        self.branch_deltas += other.branch_deltas


class MessageTransport(ABC):
    """Queues with consumer groups, acknowledgements, reclaim, delayed retries and a DLQ."""

    @abstractmethod
    async def ensure_queue(self, queue: str) -> None:
        """Create the queue and its consumer group if missing (idempotent). A group created
        after messages were published still receives them."""

    @abstractmethod
    async def register_consumer(self, queue: str, consumer: str) -> None:
        """Make ``consumer`` a member of the queue's group before it reads (idempotent), so
        that it is visible as a replica from the start."""

    @abstractmethod
    async def publish(self, queue: str, body: bytes) -> str:
        """Append one message; returns its id."""

    @abstractmethod
    async def publish_batch(self, queue: str, bodies: Sequence[bytes]) -> list[str]:
        """Append many messages in one round trip; returns their ids in order."""

    @abstractmethod
    async def consume(
        self, queue: str, consumer: str, *, count: int, block: float | None = None
    ) -> list[Delivery]:
        """Up to ``count`` messages never delivered before, waiting up to ``block`` seconds
        for the first one (``None``: do not wait)."""

    @abstractmethod
    async def claim_idle(
        self, queue: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Delivery]:
        """Take over up to ``count`` messages left pending by any consumer for at least
        ``min_idle`` seconds (a consumer that died)."""

    @abstractmethod
    async def touch(self, queue: str, consumer: str, message_ids: Sequence[str]) -> None:
        """Reset the idle time of messages this consumer is still working on, so that
        :meth:`claim_idle` of another consumer does not take them from a live one."""

    @abstractmethod
    async def commit(self, outcome: Outcome) -> None:
        """Write the outcome's messages, delayed retries and dead letters, and acknowledge its
        deliveries, all or nothing."""

    @abstractmethod
    async def promote_due(self, *, now: float | None = None, limit: int = 256) -> int:
        """Publish delayed messages whose time has come; returns how many moved. Safe to call
        from every consumer at once: each message moves exactly once."""

    @abstractmethod
    async def depth(self, queue: str) -> QueueDepth: ...

    @abstractmethod
    async def read_dead_letters(self, queue: str, *, count: int = 100) -> list[DeadLetterEntry]:
        """The oldest ``count`` dead letters of ``queue``."""

    @abstractmethod
    async def trim(self, queue: str) -> int:
        """Drop messages every consumer is done with; never one still pending or undelivered.
        Returns how many were removed."""

    @abstractmethod
    async def close(self) -> None: ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self.commit(Outcome(acks=list(deliveries)))

    async def schedule(self, queue: str, body: bytes, due_at: float) -> None:
        await self.commit(Outcome(delayed=[DelayedMessage(queue, body, due_at)]))

    async def retry_later(self, delivery: Delivery, body: bytes, delay: float) -> None:
        """Acknowledge ``delivery`` and schedule ``body`` for its queue in ``delay`` seconds."""
        due = time.time() + delay
        await self.commit(
            Outcome(delayed=[DelayedMessage(delivery.queue, body, due)], acks=[delivery])
        )

    async def dead_letter(self, delivery: Delivery, error: Mapping[str, Any]) -> None:
        """Acknowledge ``delivery`` and keep its original message in the queue's DLQ."""
        await self.commit(
            Outcome(
                dead_letters=[DeadLetter(delivery.queue, delivery.body, error)], acks=[delivery]
            )
        )
