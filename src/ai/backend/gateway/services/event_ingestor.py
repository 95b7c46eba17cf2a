"""Applies the job events of ``bai:events`` to the jobs of record.

Each gateway replica is a consumer of one persisting group, so each entry is applied by one of
them; an entry is acknowledged only after its batch is committed to PostgreSQL. A batch that
fails to commit is tried again (never acknowledged meanwhile); if the gateway dies, it reads
its own pending entries first when it comes back under the same ``gateway_id``, and other
replicas take them over after ``claim_idle``. Re-applying an entry is harmless: its entry id is
stored with the event. The stream is trimmed below what the group has acknowledged."""

from __future__ import annotations

import asyncio
import logging
import time

from pydantic import ValidationError

from ai.backend.common.aio import Backoff
from ai.backend.common.dto.job_event import JobEvent
from ai.backend.common.log import BraceStyleAdapter

from ..clients.events_stream import EventEntry, EventsStreamClient
from ..metrics import GatewayMetrics
from ..repositories.job_events import ApplyReport, IncomingEvent, JobEventRepository
from .job_event_hub import JobEventHub

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

READ_BLOCK = 1.0
CLAIM_EVERY = 5.0


class EventIngestor:
    def __init__(
        self,
        *,
        stream: EventsStreamClient,
        events: JobEventRepository,
        hub: JobEventHub,
        metrics: GatewayMetrics,
        batch: int,
        claim_idle: float,
        trim_interval: float,
    ) -> None:
        self._stream = stream
        self._events = events
        self._hub = hub
        self._metrics = metrics
        self._batch = batch
        self._claim_idle = claim_idle
        self._trim_interval = trim_interval

    async def apply_local(self, incoming: list[IncomingEvent]) -> ApplyReport:
        """Apply events the gateway wrote itself (a cancel, a missed deadline) at once, so the
        caller sees the new state; the same event arriving later through the stream is then
        recognised as a duplicate."""
        report = await self._events.apply(incoming)
        self._after_apply(report)
        if report.stored:
            await self._stream.announce(self._hub.announcement(report.stored))
        return report

    def _after_apply(self, report: ApplyReport) -> None:
        self._hub.deliver(report.stored)
        self._metrics.events_applied(report)

    def _parse(self, entries: list[EventEntry]) -> list[IncomingEvent]:
        incoming: list[IncomingEvent] = []
        for entry in entries:
            try:
                incoming.append(
                    IncomingEvent(JobEvent.model_validate_json(entry.body), entry.entry_id)
                )
            except (ValidationError, ValueError):
                log.warning("skipped malformed job event {}", entry.entry_id)
                self._metrics.event_ignored("malformed")
        return incoming

    async def _apply_until_done(self, entries: list[EventEntry]) -> None:
        incoming = self._parse(entries)
        backoff = Backoff(maximum=5.0)
        while True:
            try:
                report = await self._events.apply(incoming) if incoming else ApplyReport()
                break
            except Exception as e:  # the database is away: keep the batch, try again
                log.warning("could not store {} job events ({}); retrying", len(incoming), e)
                self._metrics.count_error("apply-events")
                await backoff.wait()
        await self._stream.ack([entry.entry_id for entry in entries])
        self._after_apply(report)
        if report.stored:
            await self._stream.announce(self._hub.announcement(report.stored))
        for reason, count in (
            ("after_end", report.after_end),
            ("unknown_job", report.unknown_job),
        ):
            if count:
                log.debug("{} job events not applied ({})", count, reason)

    async def run(self) -> None:
        await self._stream.ensure_group()
        backoff = Backoff(maximum=5.0)
        next_claim = time.monotonic() + CLAIM_EVERY
        next_trim = time.monotonic() + self._trim_interval
        own_pending_read = False
        while True:
            try:
                if not own_pending_read:
                    # what this gateway (same id) left unacknowledged before a restart
                    entries = await self._stream.read(
                        count=self._batch, block=None, own_pending=True
                    )
                    own_pending_read = not entries
                else:
                    entries = await self._stream.read(count=self._batch, block=READ_BLOCK)
                if entries:
                    await self._apply_until_done(entries)
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + CLAIM_EVERY
                    while claimed := await self._stream.claim_idle(
                        min_idle=self._claim_idle, count=self._batch
                    ):
                        await self._apply_until_done(claimed)
                if now >= next_trim:
                    next_trim = now + self._trim_interval
                    await self._stream.trim()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("reading job events failed ({}); retrying", e)
                self._metrics.count_error("read-events")
                await backoff.wait()

    async def follow_announcements(self) -> None:
        """Feed this replica's listeners with what other replicas stored."""
        backoff = Backoff(maximum=5.0)
        while True:
            try:
                async for message in self._stream.announcements():
                    if message is None:
                        self._hub.poke_all()
                        backoff.reset()
                    else:
                        self._hub.on_announcement(message)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("lost the stored-events channel ({}); subscribing again", e)
                await backoff.wait()
