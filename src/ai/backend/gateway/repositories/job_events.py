"""The ``job_events`` table, and applying job events to jobs.

Events are numbered per job (``seq`` 1, 2, ...) under the job row's lock, so that several
gateways applying events of one job at once never give two events the same number. Terminal
states are immutable: the first terminal event wins; a later one is not applied, only counted.
An events-stream entry applied before (its ``entry_id`` is stored) is skipped, so an entry
delivered twice (a gateway died before acknowledging it) is applied once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai.backend.common.dto.gateway_api import StoredJobEvent
from ai.backend.common.dto.job_event import JobEvent, JobEventKind, JobStatus
from ai.backend.common.text import clean_strings

from ..models import JobEventRow, JobRow


@dataclass(frozen=True)
class IncomingEvent:
    """A job event to apply; ``entry_id`` is its events-stream entry (``None``: written by the
    gateway itself, as for a cancel or a missed deadline)."""

    event: JobEvent
    entry_id: str | None = None


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

    def row(self, job_id: str) -> dict[str, Any]:
        """Every column an event may change, for one ``executemany`` UPDATE of all jobs."""
        return {
            "b_id": job_id,
            "b_status": self.status,
            "b_last_seq": self.last_seq,
            "b_partials": self.partials,
            "b_progress": self.changes.get("progress", self.progress),
            "b_result": self.changes.get("result"),
            "b_error": self.changes.get("error"),
        }


_JOBS = cast(sa.Table, JobRow.__table__)
_INSERT_EVENTS = sa.insert(cast(sa.Table, JobEventRow.__table__))
_UPDATE_JOBS = (
    sa.update(_JOBS)
    .where(_JOBS.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        last_seq=sa.bindparam("b_last_seq"),
        partials=sa.bindparam("b_partials"),
        progress=sa.bindparam("b_progress"),
        result=sa.bindparam("b_result", type_=_JOBS.c.result.type),
        error=sa.bindparam("b_error", type_=_JOBS.c.error.type),
        # a job with an event was published, whether or not its creator could say so
        published_at=sa.func.coalesce(_JOBS.c.published_at, sa.func.now()),
        updated_at=sa.func.now(),
    )
)


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


def _event_data(event: JobEvent) -> dict[str, Any]:
    """The event as stored: text PostgreSQL cannot hold (NUL, lone surrogates: a handler's
    output) is scrubbed, so one odd string cannot stop the events of every job."""
    dumped = event.model_dump(mode="json", exclude_none=True)
    data: dict[str, Any] = clean_strings(dumped, scrub=True)
    return data


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
        self._max_partials = max_partials

    async def apply(self, incoming: Sequence[IncomingEvent]) -> ApplyReport:
        """Apply the events in order, in one transaction; returns what was stored."""
        report = ApplyReport()
        job_ids = sorted({item.event.job_id for item in incoming if item.event.job_id})
        if not job_ids:
            report.unknown_job = len(incoming)
            return report
        async with self._sessions.begin() as session:
            locked = await session.execute(
                sa.select(
                    JobRow.id,
                    JobRow.status,
                    JobRow.last_seq,
                    JobRow.partials,
                    JobRow.progress,
                    sa.func.jsonb_array_length(JobRow.route).label("route_length"),
                )
                .where(JobRow.id.in_(job_ids))
                .order_by(JobRow.id)
                .with_for_update()
            )
            jobs = {
                row.id: _JobState(
                    row.status, row.last_seq, row.partials, row.progress, row.route_length
                )
                for row in locked
            }
            entry_ids = [item.entry_id for item in incoming if item.entry_id is not None]
            seen: set[str] = set()
            if entry_ids:
                seen = set(
                    await session.scalars(
                        sa.select(JobEventRow.entry_id).where(JobEventRow.entry_id.in_(entry_ids))
                    )
                )
            rows = self._fold(incoming, jobs, seen, report)
            if rows:
                # one compiled statement for many rows (see JobRepository.insert)
                connection = await session.connection()
                await connection.execute(_INSERT_EVENTS, rows)
                changed = [state.row(job_id) for job_id, state in jobs.items() if state.changes]
                await connection.execute(_UPDATE_JOBS, changed)
        return report

    def _fold(
        self,
        incoming: Sequence[IncomingEvent],
        jobs: dict[str, _JobState],
        seen: set[str],
        report: ApplyReport,
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
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
            data = _event_data(event)
            self._change_state(state, event, data)
            at = event.at.astimezone(UTC) if event.at else datetime.now(UTC)
            rows.append(
                {
                    "job_id": event.job_id,
                    "seq": state.last_seq,
                    "kind": event.kind,
                    "data": data,
                    "at": at,
                    "entry_id": item.entry_id,
                }
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
        async with self._sessions() as session:
            rows = await session.execute(
                sa.select(JobEventRow.seq, JobEventRow.kind, JobEventRow.data, JobEventRow.at)
                .where(JobEventRow.job_id == job_id, JobEventRow.seq > seq)
                .order_by(JobEventRow.seq)
                .limit(limit)
            )
            return [
                StoredJobEvent(job_id=job_id, seq=r.seq, kind=r.kind, data=r.data, at=r.at)
                for r in rows
            ]
