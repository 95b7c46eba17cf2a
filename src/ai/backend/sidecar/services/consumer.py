"""The consume loop shared by actor sidecars and the crew.

Keeps up to ``concurrency`` envelopes in flight: one task hands out the slots, to entries that
silent replicas left pending (reclaimed every ``claim_idle / 3`` seconds, walking the whole
pending list) and to new entries alike, so together they never exceed it; and it takes no new
work while its handler is not ready (the runtime is away). Commits outcomes in batches, retrying
while Redis is away and isolating an outcome Redis rejects from the rest of its batch.
Periodically (and until the last in-flight entry is done, on SIGTERM too): moves due retries
back to their streams, refreshes the idle time of its own in-flight entries (only those it still
owns) so that nobody reclaims them from a live replica, trims its stream below the oldest entry
still pending or undelivered, and removes consumers that are gone (idle an hour, owing
nothing). An entry delivered more than ``max_deliveries`` times is not processed again: its job
fails and it is dead-lettered (a poison message). No error of Redis or of its own tasks ends
the loop: each is logged once and counted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ai.backend.common.aio import MicroBatcher, Stopped, cancel_and_wait, unless_stopped
from ai.backend.common.dto.envelope_wire import WireEnvelope
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.base import Delivery, MessageTransport, Outcome

from ..metrics import SidecarMetrics
from .cancellation import CancelledJobs
from .events import EventPublisher
from .failures import CallFailure
from .processor import bad_envelope_outcome, parse_envelope
from .retrying import Backoff, RedisRetrier

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

CONSUME_BLOCK = 0.5
PROMOTE_INTERVAL = 0.1
TRIM_INTERVAL = 60.0  # the stream keeps only what is pending or undelivered (XTRIM MINID)
GONE_CONSUMER_IDLE = 3600.0  # a consumer that has not read for an hour and owes nothing is gone


class EnvelopeHandler(Protocol):
    async def handle(self, delivery: Delivery, envelope: WireEnvelope) -> Outcome:
        """What processing the envelope turned into (committed by the loop with the ack)."""

    async def abandon(
        self, delivery: Delivery, envelope: WireEnvelope, failure: CallFailure
    ) -> Outcome:
        """Give up on an envelope (its delivery limit passed): fail its job and return the
        outcome that keeps it in the DLQ."""


class WorkGate(Protocol):
    """Whether the handler can take work now (an actor's runtime is connected)."""

    @property
    def is_open(self) -> bool: ...

    async def wait_open(self) -> None: ...


@dataclass(frozen=True)
class ConsumerSettings:
    queue: str
    consumer: str
    concurrency: int
    claim_idle: float
    shutdown_grace: float = 30.0
    max_deliveries: int = 5


class BatchCommitter:
    """Commits the outcomes of deliveries that finish close together in one transaction, with
    the job events queued meanwhile (no round trip of their own)."""

    def __init__(
        self,
        transport: MessageTransport,
        retrier: RedisRetrier,
        events: EventPublisher | None = None,
    ) -> None:
        self._transport = transport
        self._retrier = retrier
        self._events = events
        self._batcher: MicroBatcher[Outcome, None] = MicroBatcher(
            self._commit_all, isolate_when=lambda e: not transport.is_transient(e)
        )

    async def commit(self, outcome: Outcome) -> None:
        events = self._events
        if events is not None:
            events.carrier_coming()
        try:
            await self._retrier.call("commit", lambda: self._batcher.submit(outcome))
        finally:
            if events is not None:
                events.carrier_done()

    async def _commit_all(self, outcomes: list[Outcome]) -> list[None]:
        merged = Outcome()
        for outcome in outcomes:
            merged.merge(outcome)
        # none while another batch of events is on its way
        carried = self._events.take() if self._events is not None else []
        if self._events is None or not carried:
            await self._transport.commit(merged)
            return [None] * len(outcomes)
        merged.events += carried
        try:
            refused = await self._transport.commit(merged)
        except Exception as e:
            # The events go first, each on its own (a refused one is skipped): a script that
            # failed later (a permanent error) wrote them already; a transient error may have
            # kept the script from running, so they are written again (at worst twice).
            self._events.taken(carried, written=not self._transport.is_transient(e))
            raise
        except BaseException:
            self._events.taken(carried, written=False)
            raise
        self._events.taken(carried, written=True, refused=refused)
        return [None] * len(outcomes)


class ConsumerLoop:
    def __init__(
        self,
        transport: MessageTransport,
        settings: ConsumerSettings,
        handler: EnvelopeHandler,
        metrics: SidecarMetrics,
        *,
        cancelled: CancelledJobs | None = None,
        gate: WorkGate | None = None,
        retrier: RedisRetrier | None = None,
        events: EventPublisher | None = None,
        on_registered: Callable[[], None] | None = None,
    ) -> None:
        self.transport = transport
        self._on_registered = on_registered
        self.settings = settings
        self.handler = handler
        self.metrics = metrics
        self.cancelled = cancelled
        self.gate = gate
        self.retrier = retrier or RedisRetrier(transport, metrics)
        self.committer = BatchCommitter(transport, self.retrier, events)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        metrics.in_flight.set_function(lambda: len(self._in_flight))  # read when scraped
        self._slot_free = asyncio.Event()

    @property
    def free_slots(self) -> int:
        return self.settings.concurrency - len(self._in_flight)

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        try:
            await unless_stopped(
                self.retrier.call(
                    "registering the consumer",
                    lambda: self.transport.register_consumer(s.queue, s.consumer),
                ),
                stop,
            )
        except Stopped:
            return
        if self._on_registered is not None:
            self._on_registered()
        drained = asyncio.Event()  # maintenance (keeping in-flight entries) lasts until then
        maintenance = asyncio.create_task(self._maintain(drained), name="consumer-maintenance")
        try:
            await self._consume(stop)
        finally:
            try:
                await self._drain()
            finally:
                drained.set()
                await cancel_and_wait(maintenance)

    async def _consume(self, stop: asyncio.Event) -> None:
        """Hand out free slots: to entries silent replicas left pending (every
        ``claim_idle / 3`` seconds), then to new entries. Slots are counted and filled in this
        one task, so an await in between cannot let more than ``concurrency`` in."""
        s = self.settings
        claim_every = max(s.claim_idle / 3, PROMOTE_INTERVAL)
        next_claim = time.monotonic() + claim_every
        backoff = Backoff()
        while not stop.is_set():
            if self.gate is not None and not self.gate.is_open:
                log.warning("{}: the runtime is away; taking no new work until it is back", s.queue)
                await _first_of(self.gate.wait_open(), stop.wait())
                continue
            if self.free_slots <= 0:
                self._slot_free.clear()
                await _first_of(self._slot_free.wait(), stop.wait())
                continue
            try:
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + claim_every
                    for delivery in await self.transport.claim_idle(
                        s.queue, s.consumer, min_idle=s.claim_idle, count=self.free_slots
                    ):
                        self._reclaimed(delivery)
                    if self.free_slots <= 0:
                        continue
                deliveries = await self.transport.consume(
                    s.queue, s.consumer, count=self.free_slots, block=CONSUME_BLOCK
                )
            except Exception as e:
                self._log_loop_error("reading the stream", e, backoff)
                await _first_of(backoff.wait(), stop.wait())
                continue
            backoff.reset()
            for delivery in deliveries:
                self._start(delivery)

    def _reclaimed(self, delivery: Delivery) -> None:
        self.metrics.reclaimed.inc()
        log.info(
            "reclaimed {} from a silent replica (delivery {})",
            delivery.message_id,
            delivery.deliveries,
        )
        self._start(delivery)

    def _log_loop_error(self, what: str, error: Exception, backoff: Backoff) -> None:
        if self.transport.is_transient(error):
            self.metrics.redis_retries.inc()
            if backoff.attempts == 0:
                log.warning("{} of {} failed ({}); retrying", what, self.settings.queue, error)
        else:
            self.metrics.count_error(what)
            log.exception("{} of {} failed; retrying", what, self.settings.queue)

    def _start(self, delivery: Delivery) -> None:
        if delivery.message_id in self._in_flight:
            return
        self.metrics.received.inc()
        task = asyncio.create_task(self._process(delivery))
        self._in_flight[delivery.message_id] = task
        task.add_done_callback(functools.partial(self._finished, delivery.message_id))

    def _finished(self, message_id: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(message_id, None)
        self._slot_free.set()

    async def _process(self, delivery: Delivery) -> None:
        """Every exception ends here, logged once and counted; the entry then stays pending
        and is reclaimed after ``claim_idle`` (its delivery count bounds how often)."""
        started = time.perf_counter()
        try:
            outcome = await self._outcome_of(delivery)
            if not outcome.is_empty():  # the crew acknowledges in its own script
                await self.committer.commit(outcome)
        except Exception:
            self.metrics.count_error("process")
            log.exception(
                "could not finish {} of {}; it stays pending", delivery.message_id, delivery.queue
            )
            return
        self.metrics.processing_seconds.observe(time.perf_counter() - started)

    async def _outcome_of(self, delivery: Delivery) -> Outcome:
        envelope, problem = parse_envelope(delivery)
        if envelope is None:
            log.warning(
                "message {} of {} is not an envelope: {}",
                delivery.message_id,
                delivery.queue,
                problem,
            )
            return bad_envelope_outcome(delivery, problem)
        limit = self.settings.max_deliveries
        if delivery.deliveries > limit:
            self.metrics.delivery_limit.inc()
            log.error(
                "envelope {} of job {} was delivered {} times without an outcome; dead-lettered",
                envelope.id,
                envelope.job_key,
                delivery.deliveries,
            )
            return await self.handler.abandon(
                delivery, envelope, CallFailure.delivery_limit(delivery.deliveries, limit)
            )
        if self.cancelled is not None and envelope.job_key in self.cancelled:
            log.info("skipping envelope {} of cancelled job {}", envelope.id, envelope.job_key)
            return Outcome(acks=[delivery])
        return await self.handler.handle(delivery, envelope)

    async def _maintain(self, until: asyncio.Event) -> None:
        s = self.settings
        touch_every = max(s.claim_idle / 3, PROMOTE_INTERVAL)
        next_touch = time.monotonic() + touch_every
        next_tidy = time.monotonic() + TRIM_INTERVAL
        backoff = Backoff()
        while not until.is_set():
            try:
                await self.transport.promote_due()
                if time.monotonic() >= next_tidy:
                    next_tidy = time.monotonic() + TRIM_INTERVAL
                    await self.transport.trim(s.queue)
                    for gone in await self.transport.remove_idle_consumers(
                        s.queue, min_idle=GONE_CONSUMER_IDLE
                    ):
                        log.info("removed consumer {} of {}: gone and owing nothing", gone, s.queue)
                if time.monotonic() >= next_touch:
                    next_touch = time.monotonic() + touch_every
                    await self._keep_in_flight()
            except Exception as e:
                self._log_loop_error("maintenance", e, backoff)
                await _first_of(backoff.wait(), until.wait())
                continue
            backoff.reset()
            await _first_of(asyncio.sleep(PROMOTE_INTERVAL), until.wait())  # a timer

    async def _keep_in_flight(self) -> None:
        """Refresh the idle time of this replica's in-flight entries, so that nobody reclaims
        them from it; say which ones another replica took over all the same."""
        s = self.settings
        taken = await self.transport.touch(s.queue, s.consumer, list(self._in_flight))
        for message_id in taken:
            self.metrics.taken_over.inc()
            log.warning(
                "{} of {} was reclaimed by another replica while in flight here; its outcome"
                " will be written twice",
                message_id,
                s.queue,
            )

    async def _drain(self) -> None:
        """Let in-flight work finish (up to the grace period); what does not stays pending in
        the stream and is reclaimed by another replica."""
        if not self._in_flight:
            return
        log.info("waiting for {} envelopes in flight", len(self._in_flight))
        tasks = list(self._in_flight.values())
        _done, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


async def _first_of(*waits: Awaitable[object]) -> None:
    """Wait for the first of ``waits``; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
