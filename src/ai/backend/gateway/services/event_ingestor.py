"""Applies the job events of ``bai:events`` to the jobs of record.

One gateway replica at a time applies them, the holder of a PostgreSQL advisory lock (the
*applier*), so a job's events are applied in the order they were written (a second applier
could commit a job's end before an earlier partial of it, which would then be dropped as late).
Every replica is a consumer of the one persisting group; a new applier first takes over every
entry the group holds unacknowledged (what the previous applier read but had not finished),
oldest first, then reads new ones. An entry is acknowledged only after its batch is committed;
applying one twice is harmless (its entry id is stored with the event). A batch PostgreSQL
refuses for what it holds is split until the one bad entry is found, which is skipped and
counted, so one event can never stop the others; a batch that fails for a passing reason (the
database away) is tried again. The stream is trimmed below what the group has acknowledged."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import sqlalchemy.exc
from pydantic import ValidationError

from ai.backend.common.aio import Backoff
from ai.backend.common.db.leader import LeaderElection
from ai.backend.common.dto.job_event import JobEvent
from ai.backend.common.log import BraceStyleAdapter

from ..clients.events_stream import EventEntry, EventsStreamClient
from ..metrics import GatewayMetrics
from ..repositories.job_events import ApplyReport, IncomingEvent, JobEventRepository, storable_json
from .job_event_hub import JobEventHub

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

READ_BLOCK = 1.0
CONSUMER_IDLE = 3600.0  # a consumer that read nothing for this long and holds nothing is gone


def is_refused(error: Exception) -> bool:
    """Whether PostgreSQL refused the batch for what it holds (bad data, a constraint, too many
    parameters), as opposed to failing for a passing reason (connection, timeout); raised
    through SQLAlchemy or by asyncpg itself (the hot paths, :mod:`ai.backend.common.db.driver`)."""
    if isinstance(error, asyncpg.PostgresError):  # (a value asyncpg could not encode too)
        return _refusing_state(error.sqlstate)
    if not isinstance(error, sqlalchemy.exc.DBAPIError) or error.connection_invalidated:
        return False
    state = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    if _refusing_state(state):
        return True
    return isinstance(error, sqlalchemy.exc.InterfaceError) and "argument" in str(error)


def _refusing_state(state: object) -> bool:
    # data exception, integrity constraint, syntax or access rule, program limit
    return isinstance(state, str) and state[:2] in ("22", "23", "42", "54")


class EventIngestor:
    def __init__(
        self,
        *,
        stream: EventsStreamClient,
        events: JobEventRepository,
        hub: JobEventHub,
        metrics: GatewayMetrics,
        leader: LeaderElection,
        batch: int,
        trim_interval: float,
    ) -> None:
        self._stream = stream
        self._events = events
        self._hub = hub
        self._metrics = metrics
        self._leader = leader
        self._batch = batch
        self._trim_interval = trim_interval
        # checked by the loops too: redis-py can swallow a cancel that lands while it checks a
        # pooled connection, so a cancel alone may not end a loop that reads Redis
        self._stopping = False

    def stop(self) -> None:
        """Make the loops return (before their tasks are cancelled)."""
        self._stopping = True

    @property
    def is_applier(self) -> bool:
        return self._leader.is_leader and not self._stopping

    async def apply_local(self, incoming: list[IncomingEvent]) -> ApplyReport:
        """Apply events the gateway wrote itself (a cancel, a missed deadline) at once, so the
        caller sees the new state; the same event arriving later through the stream is then
        recognised as a duplicate."""
        report = await self._events.apply(incoming)
        await self._publish(report)
        return report

    def _deliver(self, report: ApplyReport) -> bytes | None:
        """Hand what was stored to this replica's listeners; returns the announcement for the
        other replicas (``None``: nothing was stored)."""
        self._hub.deliver(report.stored)
        self._metrics.events_applied(report)
        return self._hub.announcement(report.stored) if report.stored else None

    async def _publish(self, report: ApplyReport) -> None:
        """Hand what was stored to this replica's listeners and tell the other replicas."""
        announcement = self._deliver(report)
        if announcement is not None:
            try:
                await self._stream.announce(announcement)
            except Exception as e:  # their listeners catch up at their next database read
                log.warning("could not announce stored job events ({})", e)

    def _parse(self, entries: list[EventEntry]) -> list[IncomingEvent]:
        incoming: list[IncomingEvent] = []
        for entry in entries:
            try:
                event = JobEvent.model_validate_json(entry.body)
            except (ValidationError, ValueError):
                log.warning("skipped malformed job event {}", entry.entry_id)
                self._metrics.event_ignored("malformed")
                continue
            incoming.append(IncomingEvent(event, entry.entry_id, storable_json(entry.body)))
        return incoming

    async def _apply_refusing(self, incoming: list[IncomingEvent]) -> ApplyReport:
        """Apply ``incoming``; when PostgreSQL refuses it for its content, apply its halves
        apart, down to the one entry it refuses, which is skipped."""
        try:
            return await self._events.apply(incoming)
        except Exception as e:
            if not is_refused(e):
                raise
            if len(incoming) == 1:
                entry = incoming[0].entry_id
                log.warning("skipped job event {}: refused by the database ({})", entry, e)
                self._metrics.event_ignored("refused")
                return ApplyReport()
        half = len(incoming) // 2
        first = await self._apply_refusing(incoming[:half])
        second = await self._apply_refusing(incoming[half:])
        first.merge(second)
        return first

    async def _apply_until_done(self, entries: list[EventEntry]) -> ApplyReport | None:
        """Apply ``entries`` (not acknowledged yet); ``None`` if this replica stopped being the
        applier before it could (the entries stay pending for the next applier)."""
        incoming = self._parse(entries)
        backoff = Backoff(maximum=5.0)
        while True:
            if not self.is_applier:
                return None
            try:
                return await self._apply_refusing(incoming) if incoming else ApplyReport()
            except Exception as e:  # the database is away: keep the batch, try again
                log.warning("could not store {} job events ({}); retrying", len(incoming), e)
                self._metrics.count_error("apply-events")
                await backoff.wait()

    async def _apply_as_leader(self) -> None:
        async for entries in self._stream.claim_all_pending(count=self._batch):
            report = await self._apply_until_done(entries)
            if report is None:
                return
            await self._publish(report)
            await self._stream.ack([entry.entry_id for entry in entries])
        # a batch's acknowledgement and announcement go with the read of the next batch, in one
        # round trip (an applier that dies first leaves the batch pending: applied again by the
        # next one, which finds its entries stored, and the other replicas' listeners catch up
        # at their next database read)
        ack: list[str] = []
        announcement: bytes | None = None
        next_chores = time.monotonic() + self._trim_interval
        while self.is_applier:
            entries, ack = await self._stream.read(
                count=self._batch, block=READ_BLOCK, ack=ack, announce=announcement
            )
            announcement = None
            if entries:
                report = await self._apply_until_done(entries)
                if report is None:
                    await self._stream.ack(ack)
                    return
                announcement = self._deliver(report)
                ack += [entry.entry_id for entry in entries]
            if time.monotonic() >= next_chores:
                next_chores = time.monotonic() + self._trim_interval
                await self._chores()
        await self._stream.ack(ack)
        if announcement is not None:
            await self._stream.announce(announcement)

    async def _chores(self) -> None:
        """Trim the stream and forget gone gateways (a failure waits for the next time: the
        batch whose acknowledgement is on its way is not held up)."""
        try:
            await self._stream.trim()
            gone = await self._stream.remove_idle_consumers(min_idle=CONSUMER_IDLE)
        except Exception as e:
            log.warning("trimming the events stream failed ({})", e)
            self._metrics.count_error("trim-events")
            return
        if gone:
            log.info("removed consumers of gone gateways: {}", ", ".join(gone))

    async def run(self) -> None:
        await self._stream.ensure_group()
        backoff = Backoff(maximum=5.0)
        while not self._stopping:
            await self._leader.wait_until_leader()
            try:
                await self._apply_as_leader()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("applying job events failed ({}); retrying", e)
                self._metrics.count_error("read-events")
                await backoff.wait()

    async def follow_announcements(self) -> None:
        """Feed this replica's listeners with what other replicas stored."""
        backoff = Backoff(maximum=5.0)
        while not self._stopping:
            try:
                async for message in self._stream.announcements():
                    if self._stopping:
                        return
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
