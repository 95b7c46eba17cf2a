"""The ``job_events`` table, and applying job events to jobs.

Events are numbered per job (``seq`` 1, 2, ...) under the job row's lock, so that several
gateways applying events of one job at once never give two events the same number. Terminal
states are immutable: the first terminal event wins; a later one is not applied, only counted.
An events-stream entry applied before (its ``entry_id`` is stored) is skipped, so an entry
delivered twice (a gateway died before acknowledging it) is applied once.

A batch is applied in one transaction of three statements (lock the jobs; find the entries applied
before; write the events and the jobs' new state), sent through asyncpg
(:mod:`ai.backend.common.db.driver`): this runs for every event of every job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.db.driver import driver_connection, engine_of
from ai.backend.common.dto.gateway_api import StoredJobEvent
from ai.backend.common.dto.job_event import JobEvent, JobEventKind, JobStatus
from ai.backend.common.json import dumps
from ai.backend.common.text import clean_strings


@dataclass(frozen=True)
class IncomingEvent:
    """A job event to apply; ``entry_id`` is its events-stream entry (``None``: written by the
    gateway itself, as for a cancel or a missed deadline)."""

    event: JobEvent
    entry_id: str | None = None
    # its text is known to be storable as it is (no NUL, no lone surrogate): not scrubbed
    storable: bool = False


@dataclass
class ApplyReport:
    stored: list[StoredJobEvent] = field(default_factory=list)
    unknown_job: int = 0  # no such job (an envelope published without the gateway)
    duplicate: int = 0  # entry applied before, or the same end reported again
    after_end: int = 0  # the job had ended: a second terminal event, or news after the end
    coalesced: int = 0  # partials past the job's limit

    def merge(self, other: ApplyReport) -> None:
        self.stored += other.stored
        self.unknown_job += other.unknown_job
        self.duplicate += other.duplicate
        self.after_end += other.after_end
        self.coalesced += other.coalesced


@dataclass
class _JobState:
    status: JobStatus
    last_seq: int
    partials: int
    progress: float | None
    route_length: int
    changes: dict[str, Any] = field(default_factory=dict)

    def row(self, job_id: str) -> tuple[Any, ...]:
        """Every column an event may change, for one UPDATE of all the batch's jobs."""
        return (
            job_id,
            self.status.value,
            self.last_seq,
            self.partials,
            self.changes.get("progress", self.progress),
            _json(self.changes.get("result")),
            _json(self.changes.get("error")),
        )


# the jobs of a batch, locked in id order (as every writer of job rows locks them)
_LOCK_JOBS = """
SELECT id, status, last_seq, partials, progress, jsonb_array_length(route) AS route_length
FROM jobs WHERE id = ANY($1::varchar[])
ORDER BY id FOR UPDATE
"""
# which of the batch's stream entries were applied before: asked once the locks are held, so
# that it sees what an applier that held them committed (a statement's snapshot is its start)
_SEEN_ENTRIES = "SELECT entry_id FROM job_events WHERE entry_id = ANY($1::varchar[])"
# the new events and what they change in their jobs, in one statement
_WRITE_EVENTS = """
WITH new_events AS (
    INSERT INTO job_events (job_id, seq, kind, data, at, entry_id)
    SELECT * FROM unnest($1::varchar[], $2::integer[], $3::varchar[], $4::jsonb[],
                         $5::timestamptz[], $6::varchar[])
)
UPDATE jobs SET
    status = c.status, last_seq = c.last_seq, partials = c.partials, progress = c.progress,
    result = c.result, error = c.error,
    -- a job with an event was published, whether or not its creator could say so
    published_at = coalesce(jobs.published_at, now()), updated_at = now()
FROM unnest($7::varchar[], $8::varchar[], $9::integer[], $10::integer[], $11::float8[],
            $12::jsonb[], $13::jsonb[])
     AS c(id, status, last_seq, partials, progress, result, error)
WHERE jobs.id = c.id
"""
_EVENTS_AFTER = """
SELECT seq, kind, data, at FROM job_events
WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3
"""


def _json(value: Any) -> str | None:
    return None if value is None else dumps(value).decode()


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column (the arrays ``unnest`` turns back into rows)."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


def _progress(event: JobEvent, route_length: int) -> float | None:
    """The job's progress in [0, 1] after ``event``: hop ``step`` of ``total`` (the route's
    length), with a hop's own ``ctx.progress(v, total)`` inside it."""
    if event.step is None:
        return None
    total = event.total or route_length or 1
    done = float(event.step - 1)
    if event.kind is JobEventKind.PROGRESS and isinstance(event.data, dict):
        value, of = event.data.get("progress"), event.data.get("total")
        if isinstance(value, int | float) and isinstance(of, int | float) and of > 0:
            done += min(max(value / of, 0.0), 1.0)
    return min(done / total, 1.0)


def _event_data(event: JobEvent, *, storable: bool) -> dict[str, Any]:
    """The event as stored: text PostgreSQL cannot hold (NUL, lone surrogates: a handler's
    output) is scrubbed, so one odd string cannot stop the events of every job."""
    dumped: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
    return dumped if storable else clean_strings(dumped, scrub=True)


def storable_json(body: bytes) -> bool:
    """Whether JSON text ``body`` cannot hold a string PostgreSQL refuses: in valid JSON a NUL
    or a lone surrogate can only be written as a ``\\u0000`` or ``\\udXXX`` escape."""
    return b"\\u0000" not in body and b"\\ud" not in body and b"\\uD" not in body


def terminal_fields(kind: JobEventKind, data: dict[str, Any]) -> dict[str, Any]:
    """What a terminal event (as stored: ``data``) sets on its job besides ``status``."""
    if kind is JobEventKind.SUCCEEDED:
        return {"result": data.get("result"), "progress": 1.0}
    if kind is JobEventKind.FAILED:
        return {"error": data.get("error")}
    details = data.get("data")
    reason = details.get("reason") if isinstance(details, dict) else None
    return {"error": {"code": "cancelled", "message": reason or "cancelled"}}


class JobEventRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, max_partials: int) -> None:
        self._sessions = sessions
        self._engine = engine_of(sessions)
        self._max_partials = max_partials

    async def apply(self, incoming: Sequence[IncomingEvent]) -> ApplyReport:
        """Apply the events in order, in one transaction; returns what was stored."""
        report = ApplyReport()
        job_ids = sorted({item.event.job_id for item in incoming if item.event.job_id})
        if not job_ids:
            report.unknown_job = len(incoming)
            return report
        entry_ids = [item.entry_id for item in incoming if item.entry_id is not None]
        async with driver_connection(self._engine) as connection, connection.transaction():
            locked = await connection.fetch(_LOCK_JOBS, job_ids)
            jobs = {
                record["id"]: _JobState(
                    JobStatus(record["status"]),
                    record["last_seq"],
                    record["partials"],
                    record["progress"],
                    record["route_length"],
                )
                for record in locked
            }
            seen: set[str] = set()
            if locked and entry_ids:
                seen = {r["entry_id"] for r in await connection.fetch(_SEEN_ENTRIES, entry_ids)}
            rows = self._fold(incoming, jobs, seen, report)
            if rows:
                changed = [state.row(job_id) for job_id, state in jobs.items() if state.changes]
                await connection.execute(_WRITE_EVENTS, *_columns(rows, 6), *_columns(changed, 7))
        return report

    def _fold(
        self,
        incoming: Sequence[IncomingEvent],
        jobs: dict[str, _JobState],
        seen: set[str],
        report: ApplyReport,
    ) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for item in incoming:
            event = item.event
            state = jobs.get(event.job_id or "")
            if state is None:
                report.unknown_job += 1
                continue
            if item.entry_id is not None and item.entry_id in seen:
                report.duplicate += 1
                continue
            if state.status.is_terminal:
                if event.kind.value == state.status.value:
                    report.duplicate += 1
                else:
                    report.after_end += 1
                continue
            if event.kind is JobEventKind.PARTIAL:
                if state.partials >= self._max_partials:
                    report.coalesced += 1
                    continue
                state.partials += 1
                state.changes["partials"] = state.partials
            if item.entry_id is not None:
                seen.add(item.entry_id)
            state.last_seq += 1
            state.changes["last_seq"] = state.last_seq
            data = _event_data(event, storable=item.storable)
            self._change_state(state, event, data)
            at = event.at.astimezone(UTC) if event.at else datetime.now(UTC)
            rows.append(
                (event.job_id, state.last_seq, event.kind.value, _json(data), at, item.entry_id)
            )
            report.stored.append(
                StoredJobEvent(
                    job_id=event.job_id or "", seq=state.last_seq, kind=event.kind, data=data, at=at
                )
            )
        return rows

    @staticmethod
    def _change_state(state: _JobState, event: JobEvent, data: dict[str, Any]) -> None:
        progress = _progress(event, state.route_length)
        if progress is not None and not event.kind.is_terminal:
            state.changes["progress"] = progress
        if event.kind.is_terminal:
            state.status = JobStatus(event.kind.value)
            state.changes["status"] = state.status
            state.changes.update(terminal_fields(event.kind, data))
        elif state.status is JobStatus.PENDING:
            state.status = JobStatus.RUNNING
            state.changes["status"] = state.status

    async def after(self, job_id: str, seq: int, *, limit: int = 1000) -> list[StoredJobEvent]:
        """The job's events with ``seq`` above ``seq``, oldest first."""
        async with driver_connection(self._engine) as connection:
            records = await connection.fetch(_EVENTS_AFTER, job_id, seq, limit)
        return [
            StoredJobEvent(job_id=job_id, seq=r["seq"], kind=r["kind"], data=r["data"], at=r["at"])
            for r in records
        ]
