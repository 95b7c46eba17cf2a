"""Applying job events to jobs of record (real PostgreSQL): numbering, duplicates, immutable
terminal states, coalesced partials, and two gateways applying one job's events at once."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ai.backend.common.dto.job_event import ErrorCode, JobError, JobEvent, JobEventKind, JobStatus
from ai.backend.gateway.repositories.job_events import (
    IncomingEvent,
    JobEventRepository,
    storable_json,
)
from ai.backend.gateway.repositories.jobs import JobRepository, NewJob

Sessions = async_sessionmaker[AsyncSession]


async def _new_job(jobs: JobRepository, route: list[str] | None = None) -> str:
    job_id = uuid.uuid4().hex
    await jobs.insert(
        [
            NewJob(
                job_id,
                "tool",
                route or ["doubler", "incrementer"],
                {"value": 1},
                datetime.now(UTC) + timedelta(minutes=1),
                None,
            )
        ]
    )
    return job_id


def _event(job_id: str, kind: JobEventKind, **fields: object) -> JobEvent:
    return JobEvent.model_validate({"job_id": job_id, "kind": kind, **fields})


async def test_events_are_numbered_and_fold_into_the_job(sessions: Sessions) -> None:
    jobs, events = JobRepository(sessions), JobEventRepository(sessions, max_partials=10)
    job_id = await _new_job(jobs)
    report = await events.apply(
        [
            IncomingEvent(_event(job_id, JobEventKind.RUNNING, step=1, total=2), "1-1"),
            IncomingEvent(
                _event(
                    job_id, JobEventKind.PROGRESS, step=1, total=2, data={"progress": 1, "total": 2}
                ),
                "1-2",
            ),
            IncomingEvent(_event(job_id, JobEventKind.RUNNING, step=2, total=2), "1-3"),
            IncomingEvent(_event(job_id, JobEventKind.SUCCEEDED, result={"value": 7}), "1-4"),
        ]
    )
    assert [(e.seq, e.kind) for e in report.stored] == [
        (1, JobEventKind.RUNNING),
        (2, JobEventKind.PROGRESS),
        (3, JobEventKind.RUNNING),
        (4, JobEventKind.SUCCEEDED),
    ]
    stored = await jobs.get(job_id)
    assert stored is not None
    assert stored.info.status is JobStatus.SUCCEEDED
    assert stored.info.result == {"value": 7}
    assert stored.info.progress == 1.0
    assert [e.seq for e in await events.after(job_id, 2)] == [3, 4]


async def test_progress_within_a_hop(sessions: Sessions) -> None:
    jobs, events = JobRepository(sessions), JobEventRepository(sessions, max_partials=10)
    job_id = await _new_job(jobs)
    await events.apply(
        [
            IncomingEvent(
                _event(
                    job_id, JobEventKind.PROGRESS, step=2, total=2, data={"progress": 1, "total": 4}
                )
            )
        ]
    )
    stored = await jobs.get(job_id)
    assert stored is not None
    assert stored.info.status is JobStatus.RUNNING
    assert stored.info.progress == pytest.approx((1 + 0.25) / 2)


async def test_an_entry_delivered_twice_is_applied_once(sessions: Sessions) -> None:
    jobs, events = JobRepository(sessions), JobEventRepository(sessions, max_partials=10)
    job_id = await _new_job(jobs)
    batch = [
        IncomingEvent(_event(job_id, JobEventKind.RUNNING, step=1, total=2), "5-0"),
        IncomingEvent(_event(job_id, JobEventKind.PARTIAL, step=1, total=2, data="tok"), "5-1"),
    ]
    first = await events.apply(batch)
    again = await events.apply(batch)
    assert [e.seq for e in first.stored] == [1, 2]
    assert again.stored == [] and again.duplicate == 2
    assert len(await events.after(job_id, 0)) == 2


async def test_the_first_terminal_event_wins(sessions: Sessions) -> None:
    jobs, events = JobRepository(sessions), JobEventRepository(sessions, max_partials=10)
    job_id = await _new_job(jobs)
    error = JobError(code=ErrorCode.PROCESSING_ERROR, message="boom", type="ValueError")
    first = await events.apply([IncomingEvent(_event(job_id, JobEventKind.SUCCEEDED, result=1))])
    later = await events.apply(
        [
            IncomingEvent(_event(job_id, JobEventKind.FAILED, error=error), "9-0"),
            IncomingEvent(_event(job_id, JobEventKind.SUCCEEDED, result=2), "9-1"),
            IncomingEvent(_event(job_id, JobEventKind.PROGRESS, step=1, total=2), "9-2"),
        ]
    )
    assert [e.kind for e in first.stored] == [JobEventKind.SUCCEEDED]
    assert later.stored == [] and later.after_end == 2 and later.duplicate == 1
    stored = await jobs.get(job_id)
    assert stored is not None
    assert (stored.info.status, stored.info.result, stored.info.error) == (
        JobStatus.SUCCEEDED,
        1,
        None,
    )


async def test_events_of_unknown_jobs_are_counted_not_stored(sessions: Sessions) -> None:
    events = JobEventRepository(sessions, max_partials=10)
    report = await events.apply([IncomingEvent(_event("nope", JobEventKind.RUNNING), "3-0")])
    assert (report.stored, report.unknown_job) == ([], 1)


async def test_partials_past_the_limit_are_coalesced(sessions: Sessions) -> None:
    jobs, events = JobRepository(sessions), JobEventRepository(sessions, max_partials=3)
    job_id = await _new_job(jobs)
    report = await events.apply(
        [IncomingEvent(_event(job_id, JobEventKind.PARTIAL, data=i)) for i in range(5)]
        + [IncomingEvent(_event(job_id, JobEventKind.SUCCEEDED, result="done"))]
    )
    assert [(e.seq, e.kind.value) for e in report.stored] == [
        (1, "partial"),
        (2, "partial"),
        (3, "partial"),
        (4, "succeeded"),
    ]
    assert report.coalesced == 2


async def test_two_gateways_number_one_job_without_gaps(
    sessions: Sessions, db_engine: AsyncEngine
) -> None:
    jobs = JobRepository(sessions)
    job_id = await _new_job(jobs)
    gateways = [JobEventRepository(sessions, max_partials=1000) for _ in range(2)]

    async def apply(gateway: JobEventRepository, offset: int) -> None:
        for i in range(25):
            entry = f"{offset}-{i}"
            event = _event(job_id, JobEventKind.PARTIAL, data=entry)
            await gateway.apply([IncomingEvent(event, entry)])

    await asyncio.gather(apply(gateways[0], 100), apply(gateways[1], 200))
    async with db_engine.connect() as connection:
        seqs = list(
            await connection.scalars(
                sa.text("SELECT seq FROM job_events WHERE job_id = :j ORDER BY seq"), {"j": job_id}
            )
        )
        last_seq = await connection.scalar(
            sa.text("SELECT last_seq FROM jobs WHERE id = :j"), {"j": job_id}
        )
    assert seqs == list(range(1, 51))
    assert last_seq == 50


async def test_text_postgresql_cannot_store_is_scrubbed_not_refused(sessions: Sessions) -> None:
    jobs, events = JobRepository(sessions), JobEventRepository(sessions, max_partials=10)
    job_id = await _new_job(jobs)
    report = await events.apply(
        [
            IncomingEvent(_event(job_id, JobEventKind.PARTIAL, data={"t\x00k": "a\x00b"}), "7-0"),
            IncomingEvent(_event(job_id, JobEventKind.SUCCEEDED, result="x\ud800y\x00"), "7-1"),
        ]
    )
    assert [e.data.get("data") for e in report.stored] == [{"tk": "ab"}, None]
    stored = await jobs.get(job_id)
    assert stored is not None
    assert (stored.info.status, stored.info.result) == (JobStatus.SUCCEEDED, "x?y")


@pytest.mark.parametrize(
    ("text", "storable"),
    [("plain", True), ("é ü 日本", True), ("a\x00b", False), ("\ud800", False), ("\\u0000", False)],
)
def test_event_text_known_storable_from_its_json(text: str, storable: bool) -> None:
    body = json.dumps({"job_id": "j", "kind": "partial", "data": text}).encode()
    assert storable_json(body) is storable  # a literal "\u0000" is scrubbed anyway: harmless


async def test_an_event_known_storable_is_stored_as_it_is(sessions: Sessions) -> None:
    jobs, events = JobRepository(sessions), JobEventRepository(sessions, max_partials=10)
    job_id = await _new_job(jobs)
    event = _event(job_id, JobEventKind.PARTIAL, data={"text": "é ü 日本"})
    report = await events.apply([IncomingEvent(event, "8-0", storable=True)])
    assert [e.data.get("data") for e in report.stored] == [{"text": "é ü 日本"}]
    assert [e.data.get("data") for e in await events.after(job_id, 0)] == [{"text": "é ü 日本"}]
