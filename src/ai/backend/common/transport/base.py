"""The transport interface the data plane is written against.

Vocabulary: a *queue* is an actor's inbox, named after the actor; its replicas are the
*consumers* of one consumer group, so each message goes to one replica. A :class:`Delivery` stays
pending until acknowledged; a consumer that dies leaves it pending and another one reclaims it
with :meth:`MessageTransport.claim_idle`. Delivery is at-least-once: an :class:`Outcome` writes
what a delivery turned into (successors, a delayed retry, a dead letter) *and* acknowledges it in
one atomic step, so nothing is lost between the two.

Because the same message may arrive twice, every write that ends something is idempotent: a
fan-out is counted once per parent (:class:`FanOut`), a branch ends once per envelope id
(:meth:`MessageTransport.end_branches`), and a job ends once: its first terminal write
(``succeeded``, ``failed`` or ``cancelled``) sets the job's *end guard*, which every later
terminal write checks, so a job has exactly one terminal event while its end is remembered
(``job_end_ttl``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a consumer; acknowledge it (through an :class:`Outcome`) once its
    outcome is written."""

    queue: str
    message_id: str
    body: bytes
    # how many times the queue handed this message out, this time included
    deliveries: int = 1


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


@dataclass(frozen=True, slots=True)
class FanOut:
    """Envelope ``parent_id`` of job ``job_id`` fanned out into ``children`` envelopes: the job
    has ``children - 1`` more open branches. Counted once per parent, and only while the parent
    is a branch of the job: not once the job has ended, nor once the parent's own branch has,
    nor when the parent is itself a child (``branch_of`` its parent, at ``branch_index``) that
    is not a counted branch (the extra child of a duplicate that fanned out differently). So a
    parent processed twice never leaves the job waiting for, or ending without, a branch."""

    job_id: str
    parent_id: str
    children: int
    branch_of: str | None = None
    branch_index: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    """A request's final outcome for the gateway ``gateway_id`` that waits for it (header
    ``reply-to``): ``body`` is a terminal job event (JSON). Replies are not a work queue: the
    reply stream is trimmed to a bound, and a duplicate is ignored by the gateway."""

    gateway_id: str
    body: bytes


@dataclass(slots=True)
class Outcome:
    """Everything a batch of deliveries turned into, committed atomically with their acks."""

    publish: list[tuple[str, bytes]] = field(default_factory=list)
    delayed: list[DelayedMessage] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    acks: list[Delivery] = field(default_factory=list)
    fan_outs: list[FanOut] = field(default_factory=list)
    # job events (JSON) for the events stream, written before anything else of the outcome
    events: list[bytes] = field(default_factory=list)
    # final outcomes of requests, for the reply streams of the gateways waiting for them
    replies: list[Reply] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (
            self.replies
            or self.publish
            or self.delayed
            or self.dead_letters
            or self.acks
            or self.fan_outs
            or self.events
        )

    def merge(self, other: Outcome) -> None:
        """Add ``other``'s writes to this one (to commit several deliveries at once)."""
        self.publish += other.publish
        self.delayed += other.delayed
        self.dead_letters += other.dead_letters
        self.acks += other.acks
        self.fan_outs += other.fan_outs
        self.events += other.events
        self.replies += other.replies


class BranchEnded(Enum):
    """What :meth:`MessageTransport.end_branches` did with one ending branch."""

    OPEN = "open"  # recorded; other branches of the job are still open
    JOB_ENDED = "job_ended"  # it was the last branch: the job's terminal event is written
    DUPLICATE = "duplicate"  # this envelope's branch had ended already: nothing written
    AFTER_JOB_END = "after_job_end"  # the job had ended already (or was cancelled)
    JOB_STATE_LOST = "job_state_lost"  # a fan-out child whose job state expired: job failed


@dataclass(frozen=True, slots=True)
class BranchEnd:
    """One branch of a job reaching the end of its route (``happy-end`` or ``error-end``).

    ``outcome`` is the branch's final payload (succeeded) or its error (failed), as JSON;
    ``event`` holds the fields of the job's terminal event other than ``kind``, ``result``,
    ``error`` and ``data``, should this branch be the last one. ``branch`` is the fan-out
    position, which orders the job's results; ``fanned_out`` tells a child of fan-out
    ``parent_id`` (whose job must have recorded that fan-out) from a job's only branch;
    ``reply_to``: the gateway that also gets the job's terminal event on its reply stream."""

    delivery: Delivery
    job_id: str
    envelope_id: str
    branch: tuple[int, ...]
    succeeded: bool
    outcome: bytes
    event: Mapping[str, Any]
    parent_id: str | None = None
    reply_to: str | None = None

    @property
    def fanned_out(self) -> bool:
        return bool(self.branch)


@dataclass(frozen=True, slots=True)
class JobEndResult:
    """``ended``: this call ended the job (as ``ended_as``); else the job had ended already, as
    ``ended_as`` (``succeeded``, ``failed`` or ``cancelled``)."""

    ended: bool
    ended_as: str


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
        ``min_idle`` seconds (a consumer that died), with their delivery counts. Successive calls
        walk the whole pending list (a cursor is kept per queue), so entries deep in a long list
        are reached too."""

    @abstractmethod
    async def touch(self, queue: str, consumer: str, message_ids: Sequence[str]) -> list[str]:
        """Reset the idle time of messages this consumer is still working on, so that
        :meth:`claim_idle` of another consumer does not take them from a live one. Only messages
        this consumer still owns are touched, atomically; returns the ids that another consumer
        has taken over meanwhile (their outcome will be written twice)."""

    @abstractmethod
    async def commit(self, outcome: Outcome) -> int:
        """Write the outcome's job events (first), messages, delayed retries, dead letters and
        replies, and acknowledge its deliveries, all or nothing, except the job events: returns
        how many of those the events stream refused (dropped: events never hold up the data
        plane)."""

    @abstractmethod
    async def end_branches(self, ends: Sequence[BranchEnd]) -> list[BranchEnded]:
        """End each branch once (by envelope id), acknowledge its delivery, and write the job's
        terminal event when it was the job's last open branch: ``succeeded`` with the result
        (``{"results": [...]}`` in branch order after a fan-out) or ``failed`` with the first
        failed branch's error (also to the reply stream of the branch's ``reply_to``). Each
        branch is one atomic step with its acknowledgement."""

    @abstractmethod
    async def cancel_job(
        self, job_id: str, reason: str, *, keep: float | None = None
    ) -> JobEndResult:
        """End the job as ``cancelled`` unless it has ended already: in one atomic step, set
        its end guard, add it to the cancelled jobs that consumers skip, tell them, and write
        the ``cancelled`` event (``data.reason``). Consumers skip the job's envelopes for
        ``keep`` seconds (default and at most a day): pass the time left until the job's
        deadline (plus a margin), after which none of its envelopes can be in flight, so the
        set of cancelled jobs does not grow with the number of cancels."""

    @abstractmethod
    async def fail_job(
        self,
        job_id: str,
        error: Mapping[str, Any],
        event: Mapping[str, Any],
        *,
        keep: float | None = None,
    ) -> JobEndResult:
        """End the job as ``failed`` with ``error`` unless it has ended already (through its end
        guard, like every terminal write), whatever its open branches: for an envelope that can
        be neither processed nor routed (a poison message). ``event`` holds the event's other
        fields (``envelope_id``, ``actor``, ``attempt``)."""

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
    async def remove_idle_consumers(self, queue: str, *, min_idle: float) -> list[str]:
        """Remove the queue's consumers that hold no pending message and have not read for
        ``min_idle`` seconds (replicas that are gone); returns their names."""

    @abstractmethod
    async def trim(self, queue: str) -> int:
        """Drop messages every consumer is done with; never one still pending or undelivered.
        Returns how many were removed."""

    @abstractmethod
    async def close(self) -> None: ...

    def is_transient(self, error: BaseException) -> bool:
        """Whether ``error`` may pass if the same call is tried again (the server is away,
        restarting or busy), as opposed to a call the server rejects for what it is."""
        return isinstance(error, ConnectionError | TimeoutError)

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
