"""The consume loop shared by actor sidecars and the crew.

Keeps up to ``concurrency`` envelopes in flight; commits their outcomes in batches (one MULTI
for everything that finished together); periodically reclaims entries that dead replicas left
pending, refreshes the idle time of its own in-flight entries so that nobody reclaims them from
a live replica, moves due retries back to their streams, and trims its stream below the oldest
entry still pending or undelivered.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ai.backend.common.aio import MicroBatcher, cancel_and_wait
from ai.backend.common.dto.envelope import Envelope
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.transport.base import Delivery, MessageTransport, Outcome

from ..metrics import SidecarMetrics
from .cancellation import CancelledJobs
from .processor import bad_envelope_outcome, parse_envelope

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

EnvelopeHandler = Callable[[Delivery, Envelope], Awaitable[Outcome]]

CONSUME_BLOCK = 0.5
PROMOTE_INTERVAL = 0.1
TRIM_INTERVAL = 60.0  # the stream keeps only what is pending or undelivered (XTRIM MINID)


@dataclass(frozen=True)
class ConsumerSettings:
    queue: str
    consumer: str
    concurrency: int
    claim_idle: float
    shutdown_grace: float = 30.0


class BatchCommitter:
    """Commits the outcomes of deliveries that finish close together in one transaction."""

    def __init__(self, transport: MessageTransport) -> None:
        self._transport = transport
        self._batcher: MicroBatcher[Outcome, None] = MicroBatcher(self._commit_all)

    async def commit(self, outcome: Outcome) -> None:
        await self._batcher.submit(outcome)

    async def _commit_all(self, outcomes: list[Outcome]) -> list[None]:
        merged = Outcome()
        for outcome in outcomes:
            merged.merge(outcome)
        await self._transport.commit(merged)
        return [None] * len(outcomes)


class ConsumerLoop:
    def __init__(
        self,
        transport: MessageTransport,
        settings: ConsumerSettings,
        handler: EnvelopeHandler,
        metrics: SidecarMetrics,
        cancelled: CancelledJobs | None = None,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.handler = handler
        self.metrics = metrics
        self.cancelled = cancelled
        self.committer = BatchCommitter(transport)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._slot_free = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await self.transport.register_consumer(s.queue, s.consumer)
        maintenance = asyncio.create_task(self._maintain(stop), name="consumer-maintenance")
        try:
            while not stop.is_set():
                free = s.concurrency - len(self._in_flight)
                if free <= 0:
                    self._slot_free.clear()
                    await _first_of(self._slot_free.wait(), stop.wait())
                    continue
                deliveries = await self.transport.consume(
                    s.queue, s.consumer, count=free, block=CONSUME_BLOCK
                )
                for delivery in deliveries:
                    self._start(delivery)
        finally:
            await cancel_and_wait(maintenance)
            await self._drain()

    def _start(self, delivery: Delivery) -> None:
        if delivery.message_id in self._in_flight:
            return
        self.metrics.received.inc()
        self.metrics.in_flight.inc()
        task = asyncio.create_task(self._process(delivery))
        self._in_flight[delivery.message_id] = task
        task.add_done_callback(functools.partial(self._finished, delivery.message_id))

    def _finished(self, message_id: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(message_id, None)
        self.metrics.in_flight.dec()
        self._slot_free.set()

    async def _process(self, delivery: Delivery) -> None:
        started = time.perf_counter()
        envelope, problem = parse_envelope(delivery)
        if envelope is None:
            log.warning(
                "message {} of {} is not an envelope: {}",
                delivery.message_id,
                delivery.queue,
                problem,
            )
            outcome = bad_envelope_outcome(delivery, problem)
        elif self.cancelled is not None and envelope.job_key in self.cancelled:
            log.info("skipping envelope {} of cancelled job {}", envelope.id, envelope.job_key)
            outcome = Outcome(acks=[delivery])
        else:
            outcome = await self.handler(delivery, envelope)
        try:
            await self.committer.commit(outcome)
        except Exception:
            # left pending: this replica or another one reclaims it after claim_idle
            log.exception("could not commit the outcome of {}", delivery.message_id)
            return
        self.metrics.processing_seconds.observe(time.perf_counter() - started)

    async def _maintain(self, stop: asyncio.Event) -> None:
        s = self.settings
        claim_every = max(s.claim_idle / 3, PROMOTE_INTERVAL)
        next_claim = time.monotonic() + claim_every
        next_trim = time.monotonic() + TRIM_INTERVAL
        while not stop.is_set():
            try:
                await self.transport.promote_due()
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + TRIM_INTERVAL
                    await self.transport.trim(s.queue)
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + claim_every
                    await self.transport.touch(s.queue, s.consumer, list(self._in_flight))
                    free = s.concurrency - len(self._in_flight)
                    if free > 0:
                        claimed = await self.transport.claim_idle(
                            s.queue, s.consumer, min_idle=s.claim_idle, count=free
                        )
                        for delivery in claimed:
                            log.info("reclaimed {} from a silent replica", delivery.message_id)
                            self._start(delivery)
            except Exception:
                log.exception("maintenance of {} failed; trying again", s.queue)
            await _first_of(asyncio.sleep(PROMOTE_INTERVAL), stop.wait())  # a timer

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
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
