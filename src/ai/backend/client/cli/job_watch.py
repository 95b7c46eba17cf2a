"""Following a job as it runs: its events become a live progress bar (on a terminal) or plain
lines (in a pipe), its partial outputs are printed as they arrive, and the result at the end.

Progress follows the job's route: hop k of n spans k-1 … k; ``ctx.progress(v, total)`` inside
a hop moves it to k-1 + v/total; each partial output moves the rest of the hop a shrinking step
(1/2, 1/3, …), so the bar never runs backwards or reaches the end before the job does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
from pydantic import BaseModel
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ai.backend.common.dto.job_event import JobEventKind

from .output import console

if TYPE_CHECKING:
    from ai.backend.common.dto.gateway_api import JobInfo, StoredJobEvent


@dataclass
class HopProgress:
    """Where a job stands, from its events (see the module docstring)."""

    hops: int
    step: int = 0
    fraction: float = 0.0
    partials_in_hop: int = 0
    label: str = "pending"

    @property
    def completed(self) -> float:
        return min(max(self.step - 1, 0) + self.fraction, float(self.hops))

    def feed(self, event: StoredJobEvent) -> None:
        data = event.data
        step = data.get("step")
        if isinstance(step, int) and step >= 1 and step != self.step:
            self.step, self.fraction, self.partials_in_hop = step, 0.0, 0
        actor = data.get("actor")
        where = f"{actor} ({max(self.step, 1)}/{self.hops})" if actor else self.label
        if event.kind is JobEventKind.RUNNING:
            self.label = where
        elif event.kind is JobEventKind.PROGRESS:
            raw = data.get("data")
            reported: dict[str, Any] = raw if isinstance(raw, dict) else {}
            value, total = reported.get("progress"), reported.get("total")
            if isinstance(value, int | float) and isinstance(total, int | float) and total > 0:
                self.fraction = max(self.fraction, min(max(value / total, 0.0), 1.0))
            message = reported.get("message")
            self.label = f"{where}: {message}" if message else where
        elif event.kind is JobEventKind.PARTIAL:
            self.label = where
            self.partials_in_hop += 1
            self.fraction += (1.0 - self.fraction) / (self.partials_in_hop + 1)
        elif event.kind is JobEventKind.SUCCEEDED:
            self.step, self.fraction, self.label = self.hops, 1.0, "succeeded"
        else:
            self.label = str(event.kind)


def partial_text(partial: Any) -> str:
    """A partial output as text: a string as it is, the one string of a one-field object
    (``{"token": "word"}`` → ``word``), anything else as JSON."""
    if isinstance(partial, str):
        return partial
    if isinstance(partial, dict) and len(partial) == 1:
        [only] = partial.values()
        if isinstance(only, str):
            return only
    return json.dumps(partial, ensure_ascii=False)


def error_text(error: Any) -> str:
    """A job's error in one line: ``actor: Type: message (code)``."""
    if error is None:
        return "no error recorded"
    data = error.model_dump(mode="json") if isinstance(error, BaseModel) else dict(error)
    parts = [f"{data['actor']}: " if data.get("actor") else ""]
    parts.append(f"{data['type']}: " if data.get("type") else "")
    parts.append(str(data.get("message") or "failed"))
    if data.get("code"):
        parts.append(f" ({data['code']})")
    return "".join(parts)


def event_line(event: StoredJobEvent) -> str:
    """One event for ``job events``: ``#3 partial doubler 1/2 {"token":"a"}``."""
    data = event.data
    columns = [f"#{event.seq}", event.at.isoformat(timespec="milliseconds"), str(event.kind)]
    if data.get("actor"):
        step = f" {data['step']}/{data['total']}" if data.get("step") and data.get("total") else ""
        columns.append(f"{data['actor']}{step}")
    if event.kind is JobEventKind.PARTIAL:
        columns.append(partial_text(data.get("data")))
    elif event.kind is JobEventKind.PROGRESS and isinstance(data.get("data"), dict):
        reported = data["data"]
        amount = reported.get("progress")
        if reported.get("total") is not None:
            amount = f"{amount}/{reported['total']}"
        columns.append(" ".join(str(x) for x in (amount, reported.get("message")) if x is not None))
    elif event.kind is JobEventKind.SUCCEEDED:
        columns.append(json.dumps(data.get("result"), ensure_ascii=False))
    elif event.kind is JobEventKind.FAILED:
        columns.append(error_text(data.get("error")))
    elif event.kind is JobEventKind.CANCELLED:
        details = data.get("data")
        if isinstance(details, dict) and details.get("reason"):
            columns.append(str(details["reason"]))
    return "  ".join(columns)


async def watch_job(job: JobInfo, events: AsyncIterator[StoredJobEvent]) -> None:
    """Render ``events`` until the stream ends: a live bar on a terminal, lines otherwise.
    Partial outputs go to stdout as they arrive; hop changes (in a pipe) to stderr."""
    hops = max(len(job.route), 1)
    progress = HopProgress(hops=hops)
    out = console()
    if not out.is_terminal:
        async for event in events:
            progress.feed(event)
            if event.kind is JobEventKind.PARTIAL:
                click.echo(partial_text(event.data.get("data")))
            elif event.kind in (JobEventKind.RUNNING, JobEventKind.PROGRESS):
                click.echo(f"[{progress.completed:.2f}/{hops}] {progress.label}", err=True)
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    )
    with bar:
        task = bar.add_task(progress.label, total=hops)
        async for event in events:
            progress.feed(event)
            if event.kind is JobEventKind.PARTIAL:
                bar.console.print(Text(partial_text(event.data.get("data"))))
            bar.update(task, completed=progress.completed, description=progress.label)
