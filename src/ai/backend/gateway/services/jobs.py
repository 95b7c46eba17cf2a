"""Jobs: create (write the job, publish its first envelope, then answer), read, list, cancel,
wait for the end, and follow a job's events (history, then live).

Creating is group-committed: the jobs of requests arriving together are written in one
statement and their envelopes published in one round trip. A job whose publish failed (Redis
away) or was never confirmed (the gateway died in between) stays ``published_at IS NULL`` and
is published again by a sweeper (:mod:`.job_sweeper`), or failed once its deadline passed: no
job is left pending forever. The envelope's id is the job's id, so a second publish of the same
job is recognised downstream as a duplicate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ai.backend.common.aio import MicroBatcher
from ai.backend.common.dto.envelope import check_user_route, new_envelope_id
from ai.backend.common.dto.envelope_wire import WireEnvelope, WireRoute
from ai.backend.common.dto.gateway_api import JobCreateRequest, JobInfo, StoredJobEvent
from ai.backend.common.dto.job_event import JobEvent, JobEventKind, JobStatus
from ai.backend.common.log import BraceStyleAdapter

from ..clients.data_plane import DataPlaneClient
from ..errors import Conflict, InvalidArgument, JobNotFound
from ..metrics import GatewayMetrics
from ..repositories.job_events import IncomingEvent, JobEventRepository, terminal_fields
from ..repositories.jobs import JobRepository, NewJob
from .event_ingestor import EventIngestor, is_refused
from .job_event_hub import JobEventHub
from .tools import ToolService

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

DEFAULT_ROUTE_TIMEOUT = timedelta(seconds=300)
HISTORY_PAGE = 1000
# without a heartbeat, a follower re-reads the database this often (in case an announcement of
# another replica was lost)
FALLBACK_POLL = 5.0
# sidecars skip a cancelled job's envelopes until its deadline and this long after it: past its
# deadline a job's envelopes are dropped anyway (sidecars check the envelope's deadline)
CANCEL_MARGIN = 60.0
STAMPS_CLOSE_TIMEOUT = 5.0


def skip_for(deadline_at: datetime | None) -> float | None:
    """How long sidecars must skip the envelopes of a job that ends early (``None``: the
    default, a day)."""
    if deadline_at is None:
        return None
    return max((deadline_at - datetime.now(UTC)).total_seconds(), 0.0) + CANCEL_MARGIN


@dataclass(frozen=True)
class Caller:
    """Who calls: ``access_key`` owns the jobs it creates (``None`` with ``auth.mode = none``);
    an admin sees every job."""

    access_key: str | None
    role: str = "user"
    is_admin: bool = False

    def can_see(self, owner: str | None) -> bool:
        return self.is_admin or self.access_key is None or owner == self.access_key


@dataclass(frozen=True)
class JobPage:
    items: list[JobInfo]
    next_cursor: str | None


class _PublishStamps:
    """Stamps jobs as published off the answer's path: the caller is answered once the envelope
    is out, and the stamps of what was published meanwhile go in one statement. A stamp that
    fails (or a gateway that dies first) only means the sweeper publishes that job again after
    ``publish_retry_after``; a job with an event is stamped by the event applier anyway."""

    def __init__(self, jobs: JobRepository, metrics: GatewayMetrics) -> None:
        self._jobs = jobs
        self._metrics = metrics
        self._waiting: list[str] = []
        self._flusher: asyncio.Task[None] | None = None

    def add(self, job_ids: list[str]) -> None:
        self._waiting += job_ids
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="publish-stamps")

    async def _flush(self) -> None:
        while self._waiting:
            job_ids, self._waiting = self._waiting, []
            try:
                await self._jobs.mark_published(job_ids)
            except Exception:
                self._metrics.count_error("mark-published")

    async def close(self) -> None:
        """Write what is waiting (at shutdown, once no job is created any more), for at most
        ``STAMPS_CLOSE_TIMEOUT`` seconds (the sweeper publishes the rest again)."""
        if self._flusher is None:
            return
        try:
            async with asyncio.timeout(STAMPS_CLOSE_TIMEOUT):
                await self._flusher
        except TimeoutError:
            log.warning("publish stamps still waiting at shutdown; their jobs are published again")


@dataclass(frozen=True)
class _Creation:
    job: NewJob
    actor: str
    envelope: bytes


def first_envelope(job_id: str, route: list[str], arguments: Any, deadline_at: datetime) -> bytes:
    """The envelope that starts job ``job_id`` (its id is the job's id); ``ValueError`` for a
    route a user may not write. The actors' names were checked with the request (or the tool)."""
    check_user_route(route)
    envelope = WireEnvelope(
        id=job_id,
        job_id=job_id,
        route=WireRoute(route, 0),
        payload=arguments,
        deadline_at=deadline_at,
    )
    return envelope.to_json_bytes()


class JobService:
    def __init__(
        self,
        *,
        jobs: JobRepository,
        events: JobEventRepository,
        tools: ToolService,
        data_plane: DataPlaneClient,
        hub: JobEventHub,
        ingestor: EventIngestor,
        metrics: GatewayMetrics,
    ) -> None:
        self._jobs = jobs
        self._events = events
        self._tools = tools
        self._data_plane = data_plane
        self._hub = hub
        self._ingestor = ingestor
        self._metrics = metrics
        self._creator: MicroBatcher[_Creation, datetime] = MicroBatcher(
            self._create_batch, isolate_when=is_refused
        )
        self._stamps = _PublishStamps(jobs, metrics)

    async def close(self) -> None:
        await self._stamps.close()

    async def _create_batch(self, batch: list[_Creation]) -> list[datetime | Exception]:
        """One statement for the batch's jobs (a row PostgreSQL refuses fails them all, and
        the batcher then creates each alone), one round trip for their envelopes; their
        published stamps follow in the background."""
        created = await self._jobs.insert([item.job for item in batch])
        try:
            await self._data_plane.publish([(item.actor, item.envelope) for item in batch])
        except Exception:
            # the jobs are stored: the sweeper publishes them again after publish_retry_after
            self._metrics.count_error("publish")
        else:
            self._stamps.add([item.job.id for item in batch])
        self._metrics.jobs_created.inc(len(batch))
        return [created[item.job.id] for item in batch]

    async def create(self, request: JobCreateRequest, *, caller: Caller) -> JobInfo:
        """A new job, ``pending``, whose first envelope is published. Unknown tool →
        ``ToolNotFound``; arguments not matching the tool's schema → ``InvalidArgument``."""
        if request.tool is not None:
            return await self.call_tool(
                request.tool, request.arguments, timeout=request.timeout, caller=caller
            )
        assert request.route is not None
        timeout = request.timeout or DEFAULT_ROUTE_TIMEOUT
        return await self._start(None, list(request.route), request.arguments, timeout, caller)

    async def call_tool(
        self, name: str, arguments: Any, *, timeout: timedelta | None, caller: Caller
    ) -> JobInfo:
        """``create`` by tool name (the tool's ``timeout`` when ``timeout`` is ``None``)."""
        spec = self._tools.get(name)
        filled = self._tools.validate_arguments(name, arguments)
        return await self._start(name, list(spec.route), filled, timeout or spec.timeout, caller)

    async def _start(
        self,
        tool: str | None,
        route: list[str],
        arguments: dict[str, Any],
        timeout: timedelta,
        caller: Caller,
    ) -> JobInfo:
        job_id = new_envelope_id()
        deadline_at = datetime.now(UTC) + timeout
        try:
            envelope = first_envelope(job_id, route, arguments, deadline_at)
        except ValueError as e:
            raise InvalidArgument(f"route: {e}") from None
        job = NewJob(job_id, tool, route, arguments, deadline_at, caller.access_key)
        created_at = await self._creator.submit(_Creation(job, route[0], envelope))
        return JobInfo(
            id=job_id,
            status=JobStatus.PENDING,
            tool=tool,
            route=route,
            arguments=arguments,
            created_at=created_at,
            updated_at=created_at,
            deadline_at=deadline_at,
        )

    async def get(self, job_id: str, *, caller: Caller) -> JobInfo:
        """``JobNotFound`` for an unknown job or one the caller may not see."""
        stored = await self._jobs.get(job_id)
        if stored is None or not caller.can_see(stored.owner):
            raise JobNotFound(f"no job {job_id!r}")
        return stored.info

    async def list(
        self, *, caller: Caller, status: JobStatus | None, limit: int, cursor: str | None
    ) -> JobPage:
        """Newest first; ``next_cursor`` continues the list."""
        items, next_cursor = await self._jobs.page(
            owner=caller.access_key,
            all_owners=caller.is_admin or caller.access_key is None,
            status=status,
            limit=limit,
            cursor=cursor,
        )
        return JobPage(items, next_cursor)

    async def cancel(self, job_id: str, *, caller: Caller, reason: str) -> JobInfo:
        """The job, now ``cancelled``; ``Conflict`` when it had already ended."""
        job = await self.get(job_id, caller=caller)
        if job.status.is_terminal:
            raise Conflict(f"job {job_id} has already ended as {job.status.value}")
        ended = await self._data_plane.cancel(job_id, reason, keep=skip_for(job.deadline_at))
        if not ended.ended and ended.ended_as != "cancelled":
            raise Conflict(f"job {job_id} has already ended as {ended.ended_as}")
        # (ended as cancelled before: a cancel whose answer was lost, asked again; the event
        # below is then a duplicate of the first one's, if that was stored)
        event = JobEvent(job_id=job_id, kind=JobEventKind.CANCELLED, data={"reason": reason})
        await self._ingestor.apply_local([IncomingEvent(event)])
        return await self.get(job_id, caller=caller)

    async def wait(
        self, job_id: str, *, caller: Caller, timeout: float, known: JobInfo | None = None
    ) -> JobInfo:
        """The job once it has ended, or as it is when ``timeout`` seconds have passed.
        ``known``: the job as the caller last saw it; when it has ended, it is the answer."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        with self._hub.listen(job_id) as listener:
            # read once the listener exists: an end announced before it is stored in the row by
            # now (a fast job can end while its creator is still stamping the publish)
            if known is not None and known.status.is_terminal:
                return known
            job = await self.get(job_id, caller=caller)
            while not job.status.is_terminal:
                remaining = until - loop.time()
                if remaining <= 0:
                    break
                news = await listener.wait(min(remaining, FALLBACK_POLL))
                events, poked = listener.take()
                ended = next((e for e in events if e.kind.is_terminal), None)
                if ended is not None:
                    # stored by this replica just now: the job with its end applied
                    return job.model_copy(
                        update={
                            "status": JobStatus(ended.kind.value),
                            "updated_at": ended.at,
                            "last_seq": ended.seq,
                            **terminal_fields(ended.kind, ended.data),
                        }
                    )
                if poked or not news:
                    job = await self.get(job_id, caller=caller)
        return job

    async def events(
        self, job_id: str, *, after: int = 0, heartbeat: float | None = None
    ) -> AsyncIterator[StoredJobEvent | None]:
        """The job's events with ``seq > after``: its history, then live ones as they are
        stored, without gaps or duplicates, ending after the terminal event (at once for a job
        that has ended). Yields ``None`` after ``heartbeat`` seconds without an event. The
        caller checks first that the job exists and may be seen (``get``)."""
        with self._hub.listen(job_id) as listener:
            self._metrics.streams.inc()
            try:
                last = after
                while True:
                    page = await self._events.after(job_id, last, limit=HISTORY_PAGE)
                    for event in page:
                        yield event
                        last = event.seq
                        if event.kind.is_terminal:
                            return
                    if len(page) == HISTORY_PAGE:
                        continue
                    stored = await self._jobs.get(job_id)
                    if stored is None or stored.info.status.is_terminal:
                        # ended (its terminal event is at or before ``after``), or deleted
                        if not await self._events.after(job_id, last, limit=1):
                            return
                        continue
                    async for item in self._live(listener, last, heartbeat):
                        if item is None:
                            yield None
                            continue
                        yield item
                        last = item.seq
                        if item.kind.is_terminal:
                            return
            finally:
                self._metrics.streams.dec()

    @staticmethod
    async def _live(
        listener: Any, last: int, heartbeat: float | None
    ) -> AsyncIterator[StoredJobEvent | None]:
        """Events handed to ``listener`` that follow ``last`` directly; returns (for a read of
        the database) on a gap, a poke, or a quiet ``heartbeat``/fallback period."""
        while True:
            if not await listener.wait(heartbeat or FALLBACK_POLL):
                if heartbeat:
                    yield None
                return
            events, poked = listener.take()
            for event in events:
                if event.seq <= last:
                    continue
                if event.seq != last + 1:
                    return
                yield event
                last = event.seq
                if event.kind.is_terminal:
                    return
            if poked:
                return
