"""``backend.ai job …``: run tools as jobs, follow them live, list, inspect, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import click

from ai.backend.common.dto.job_event import JobStatus

from .base import EXIT_CODES_HELP, client_group, fail, run_session
from .job_watch import error_text, event_line, watch_job
from .output import json_option, print_fields, print_json, print_json_line, print_table
from .params import ASSIGNMENT, DURATION, JSON_OBJECT

if TYPE_CHECKING:
    from ai.backend.client import AsyncSession
    from ai.backend.client.dto import JobPage
    from ai.backend.common.dto.gateway_api import JobInfo, StoredJobEvent

# `job events` without --follow on a running job: after the events stored when the command
# started, it prints what else arrives until nothing has for this long
HISTORY_QUIET_SECONDS = 0.5


@client_group(epilog=EXIT_CODES_HELP)
def job() -> None:
    """Jobs: calls of a tool (a route of actors) through the gateway, with live events.

    \b
    backend.ai job run double_then_increment --arg value=10 --follow
    backend.ai job ls --status failed
    backend.ai job get JOB_ID
    backend.ai job events JOB_ID --follow
    backend.ai job cancel JOB_ID
    """


def _route(info: JobInfo) -> str:
    return " → ".join(info.route)


def _report_end(info: JobInfo, elapsed: float | None = None) -> None:
    """Print how a followed job ended; exit 1 when it failed or was cancelled."""
    took = f" in {elapsed:.1f}s" if elapsed is not None else ""
    if info.status is JobStatus.SUCCEEDED:
        click.echo(f"job {info.id} succeeded{took}", err=True)
        return
    if info.status is JobStatus.CANCELLED:
        fail(f"job {info.id} was cancelled: {error_text(info.error)}")
    fail(f"job {info.id} {info.status}: {error_text(info.error)}")


@job.command("run")
@click.argument("tool")
@click.option(
    "--arg",
    "assignments",
    multiple=True,
    type=ASSIGNMENT,
    help="An argument of the tool, KEY=VALUE; VALUE is read as JSON when it is valid JSON"
    ' (10, true, [1,2], {"a":1}), else as text. Repeat for several.',
)
@click.option(
    "--json-args",
    type=JSON_OBJECT,
    default=None,
    help="All arguments as one JSON object; --arg values override its keys.",
)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Wait for the job: show its progress and partial outputs live, then its result.",
)
@click.option(
    "--timeout", type=DURATION, default=None, help="Give up on the job after this long (30s, 5m)."
)
@json_option
def run_job(
    tool: str,
    assignments: tuple[tuple[str, Any], ...],
    json_args: dict[str, Any] | None,
    follow: bool,
    timeout: str | None,
    as_json: bool,
) -> None:
    """Run a tool as a job, and follow it with --follow.

    `backend.ai tool ls` lists the tools and their arguments.

    Without --follow it prints the new job's id and returns at once, the same on a terminal
    and in a script. With --follow it shows a live progress bar (on a terminal) and the
    partial outputs as they arrive, then prints the result; it exits 1 when the job failed or
    was cancelled. With --json it prints the job as JSON: just submitted, or as it ended with
    --follow. Ctrl-C stops following; the job keeps running.
    """
    arguments = {**(json_args or {}), **dict(assignments)}

    async def work(session: AsyncSession) -> tuple[JobInfo, float]:
        started = time.monotonic()
        submitted = await session.jobs.submit(tool, arguments=arguments, timeout=timeout)
        if not follow:
            return submitted, 0.0
        if not as_json:
            click.echo(f"job {submitted.id} ({tool}: {_route(submitted)})", err=True)
        try:
            events = session.jobs.events(submitted.id)
            if as_json:
                async for _ in events:
                    pass
            else:
                await watch_job(submitted, events)
        except (asyncio.CancelledError, KeyboardInterrupt):
            click.echo(
                f"stopped following; job {submitted.id} keeps running"
                f" (`backend.ai job cancel {submitted.id}` stops it)",
                err=True,
            )
            raise
        return await session.jobs.get(submitted.id), time.monotonic() - started

    info, elapsed = run_session(work)
    if as_json:
        print_json(info)
        if follow and info.status is not JobStatus.SUCCEEDED:
            _report_end(info)
        return
    if not follow:
        click.echo(info.id)
        click.echo(f"follow it: backend.ai job events {info.id} --follow", err=True)
        return
    if info.status is JobStatus.SUCCEEDED:
        click.echo(json.dumps(info.result, indent=2, ensure_ascii=False))
    _report_end(info, elapsed)


@job.command("ls")
@click.option(
    "--status",
    type=click.Choice([status.value for status in JobStatus]),
    default=None,
    help="Only jobs in this state.",
)
@click.option(
    "--limit", type=click.IntRange(1, 500), default=20, show_default=True, help="Jobs per page."
)
@click.option("--cursor", default=None, help="The next page, as the previous page printed it.")
@json_option
def list_jobs(status: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """List your jobs, newest first, one page at a time."""

    async def work(session: AsyncSession) -> JobPage:
        return await session.jobs.list(status=status, limit=limit, cursor=cursor)

    page = run_session(work)
    if as_json:
        print_json(page)
        return
    print_table(
        ["ID", "STATUS", "TOOL", "ROUTE", "PROGRESS", "CREATED", "UPDATED"],
        (
            [
                j.id,
                j.status,
                j.tool,
                _route(j),
                f"{j.progress:.0%}" if j.progress is not None else None,
                j.created_at,
                j.updated_at,
            ]
            for j in page.items
        ),
        empty="no jobs" + (f" with status {status}" if status else ""),
    )
    if page.next_cursor:
        click.echo(f"more: backend.ai job ls --cursor {page.next_cursor}", err=True)


@job.command("get")
@click.argument("job_id", metavar="ID")
@json_option
def get_job(job_id: str, as_json: bool) -> None:
    """Show a job: its state, arguments, and its result or error."""

    async def work(session: AsyncSession) -> JobInfo:
        return await session.jobs.get(job_id)

    info = run_session(work)
    if as_json:
        print_json(info)
        return
    print_fields(
        [
            ("id", info.id),
            ("status", info.status),
            ("tool", info.tool),
            ("route", _route(info)),
            ("progress", f"{info.progress:.0%}" if info.progress is not None else None),
            ("arguments", json.dumps(info.arguments, ensure_ascii=False)),
            ("created", info.created_at.isoformat()),
            ("updated", info.updated_at.isoformat()),
            ("deadline", info.deadline_at.isoformat() if info.deadline_at else None),
        ]
    )
    if info.status is JobStatus.SUCCEEDED:
        click.echo("result:")
        click.echo(json.dumps(info.result, indent=2, ensure_ascii=False))
    elif info.error is not None:
        click.echo(f"error:  {error_text(info.error)}")


@job.command("cancel")
@click.argument("job_id", metavar="ID")
@json_option
def cancel_job(job_id: str, as_json: bool) -> None:
    """Cancel a job that has not ended.

    A job that already ended cannot be cancelled (the server answers 409).
    """

    async def work(session: AsyncSession) -> JobInfo:
        return await session.jobs.cancel(job_id)

    info = run_session(work)
    if as_json:
        print_json(info)
        return
    click.echo(f"job {info.id}: {info.status}")


def _history_end(info: JobInfo) -> int | None:
    """The number of the job's last stored event (``last_seq``; ``None`` when it has none
    yet)."""
    return info.last_seq or None


async def _so_far(
    events: AsyncIterator[StoredJobEvent], *, after: int | None, history_end: int | None
) -> AsyncIterator[StoredJobEvent]:
    """The events of a running job up to now: every one up to ``history_end`` however slowly
    the stream replays them, then what arrives until the stream has been quiet for
    ``HISTORY_QUIET_SECONDS`` (from the first event on when ``history_end`` is unknown)."""
    iterator = aiter(events)
    last = after or 0
    try:
        while True:
            in_history = history_end is not None and last < history_end
            try:
                event = await asyncio.wait_for(
                    anext(iterator), None if in_history else HISTORY_QUIET_SECONDS
                )
            except (StopAsyncIteration, TimeoutError):
                return
            last = event.seq
            yield event
    finally:
        with contextlib.suppress(Exception):
            await iterator.aclose()  # type: ignore[attr-defined]


@job.command("events")
@click.argument("job_id", metavar="ID")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until the job ends.")
@click.option(
    "--after", type=click.IntRange(min=0), default=None, help="Only events after this number."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line, for scripts.")
def job_events(job_id: str, follow: bool, after: int | None, as_json: bool) -> None:
    """Print a job's events: hops, progress, partial outputs, its end.

    Events are numbered; `--after N` starts after event N. Without --follow: the events so
    far. Of a job that has ended, all of them; of a running job, the events stored when the
    command started, then whatever else arrives until none has for 0.5 s. With --follow:
    every event until the job ends, exiting 1 when it failed or was cancelled.
    """

    async def work(session: AsyncSession) -> JobInfo:
        info = await session.jobs.get(job_id)
        events: AsyncIterator[StoredJobEvent] = session.jobs.events(job_id, after=after)
        if not follow and not info.status.is_terminal:
            # an ended job's stream closes after its terminal event: read it all; a running
            # job's stream stays open
            events = _so_far(events, after=after, history_end=_history_end(info))
        async for event in events:
            if as_json:
                print_json_line(event)
            else:
                click.echo(event_line(event))
        return await session.jobs.get(job_id) if follow else info

    info = run_session(work)
    if follow and info.status is not JobStatus.SUCCEEDED:
        _report_end(info)
