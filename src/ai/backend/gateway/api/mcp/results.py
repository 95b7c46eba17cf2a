"""What the MCP endpoint says about tools and jobs, as plain JSON: tool descriptors (the
configured tools and the built-ins ``get_job`` / ``cancel_job``), ``CallToolResult``s for a job
that ended, failed or is still running, and the progress notifications of a streamed call.

Pure: no I/O. The handlers decide when; this module decides what."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ai.backend.common.dto.gateway_api import JobInfo, StoredJobEvent
from ai.backend.common.dto.job_event import JobEventKind, JobStatus
from ai.backend.common.dto.tool_spec import ToolSpec
from ai.backend.common.json import dumps_str

GET_JOB: Final = "get_job"
CANCEL_JOB: Final = "cancel_job"
MAX_MESSAGE_LENGTH: Final = 1000

_JOB_ID_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "job_id": {"type": "string", "description": "the job_id a tool call answered with"}
    },
    "required": ["job_id"],
    "additionalProperties": False,
}
BUILTIN_TOOLS: Final = (
    {
        "name": GET_JOB,
        "description": (
            "Reads a job that a tool call started: its status and progress, and its result or"
            " error once it has ended. Use it when a tool call answered with a job_id instead"
            " of a result."
        ),
        "inputSchema": _JOB_ID_SCHEMA,
    },
    {
        "name": CANCEL_JOB,
        "description": "Cancels a job that a tool call started and that has not ended yet.",
        "inputSchema": _JOB_ID_SCHEMA,
    },
)
BUILTIN_TOOL_NAMES: Final = frozenset(tool["name"] for tool in BUILTIN_TOOLS)


def tool_descriptors(specs: list[ToolSpec]) -> list[dict[str, Any]]:
    """The configured tools (in the order given: by name) and then the built-ins; a configured
    tool that takes a built-in's name is not offered."""
    configured = [
        {"name": spec.name, "description": spec.description, "inputSchema": spec.input_schema()}
        for spec in specs
        if spec.name not in BUILTIN_TOOL_NAMES
    ]
    return [*configured, *(dict(tool) for tool in BUILTIN_TOOLS)]


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else dumps_str(value)


def text_result(text: str, *, structured: Any = None, is_error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


def error_result(text: str) -> dict[str, Any]:
    """An execution error the model can read and correct (``isError: true``)."""
    return text_result(text, is_error=True)


def value_result(value: Any) -> dict[str, Any]:
    """A tool's result: its JSON as text, and as ``structuredContent`` (an object as it is,
    anything else as ``{"result": value}``)."""
    structured = value if isinstance(value, dict) else {"result": value}
    return text_result(_text_of(value), structured=structured)


def job_json(job: JobInfo) -> dict[str, Any]:
    return job.model_dump(mode="json")


def _error_text(job: JobInfo) -> str:
    error = job.error
    if error is None:
        return f"job {job.id} failed"
    if isinstance(error, dict):
        message = error.get("message")
        return str(message) if message else dumps_str(error)
    return error.message


def job_result(job: JobInfo, handle: dict[str, Any]) -> dict[str, Any]:
    """The ``CallToolResult`` of a tool call whose job is ``job``: its result once it has
    succeeded, ``isError`` once it has failed or was cancelled, else the job's ``handle``
    (``{job_id, status, status_url, stream_url}``, as the REST API's 202; the model calls
    ``get_job`` later)."""
    if job.status is JobStatus.SUCCEEDED:
        return value_result(job.result)
    if job.status is JobStatus.FAILED:
        return error_result(_error_text(job))
    if job.status is JobStatus.CANCELLED:
        return error_result(f"job {job.id} was cancelled")
    text = (
        f"The job is still {job.status.value}; call {GET_JOB} with job_id {job.id!r} for its"
        f" result, or {CANCEL_JOB} to stop it.\n{dumps_str(handle)}"
    )
    return text_result(text, structured=handle)


@dataclass(frozen=True)
class ProgressUpdate:
    progress: float
    total: float
    message: str | None


def _clipped(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_LENGTH else text[: MAX_MESSAGE_LENGTH - 1] + "…"


class ProgressTracker:
    """Turns a job's events into MCP progress that strictly increases (DESIGN.md §5a).

    Hop k of n (1-based ``step``) spans progress k-1 … k of total n: its ``running`` event
    reports k-1; ``ctx.progress(v, total)`` in it reports k-1 + v/total; each partial moves
    1/(m+1) of the rest of the hop (m = partials so far in the hop: 1/2, 2/3, 3/4 …), so it
    never reaches the next hop; the job's success reports n. An update that would not increase
    progress (a retry, a later branch of a fan-out, a progress value below a partial's) is
    dropped: :meth:`feed` answers ``None``."""

    def __init__(self, *, hops: int) -> None:
        self._total = float(max(hops, 1))
        self._last: float | None = None
        self._step = 0
        self._fraction = 0.0  # how far into the current hop
        self._partials = 0

    def feed(self, event: StoredJobEvent) -> ProgressUpdate | None:
        data = event.data
        step = data.get("step")
        if isinstance(step, int) and step >= 1 and step != self._step:
            self._step, self._fraction, self._partials = step, 0.0, 0
        base = float(max(self._step - 1, 0))
        actor = data.get("actor")
        message: str | None
        if event.kind is JobEventKind.RUNNING:
            value = base
            message = f"{actor or 'actor'} running (step {self._step or 1} of {self._total:g})"
        elif event.kind is JobEventKind.PROGRESS:
            raw = data.get("data")
            reported: dict[str, Any] = raw if isinstance(raw, dict) else {}
            fraction = _fraction(reported.get("progress"), reported.get("total"))
            if fraction is None:
                fraction = self._advance_partial()
            elif fraction > self._fraction:
                self._fraction = fraction
            value = base + fraction
            text = reported.get("message")
            message = str(text) if text is not None else None
        elif event.kind is JobEventKind.PARTIAL:
            value = base + self._advance_partial()
            message = _partial_text(data.get("data"))
        elif event.kind is JobEventKind.SUCCEEDED:
            value, message = self._total, "succeeded"
        else:
            return None  # failed / cancelled: the result says it
        value = min(value, self._total)
        if self._last is not None and value <= self._last:
            return None
        self._last = value
        return ProgressUpdate(value, self._total, _clipped(message) if message else None)

    def _advance_partial(self) -> float:
        self._partials += 1
        self._fraction += (1.0 - self._fraction) / (self._partials + 1)
        return self._fraction


def _partial_text(partial: Any) -> str:
    """A partial as text: a string as it is, the one string of a one-field object (``{"token":
    "word"}`` → ``word``), anything else as JSON."""
    if isinstance(partial, dict) and len(partial) == 1:
        [only] = partial.values()
        if isinstance(only, str):
            return only
    return _text_of(partial)


def _fraction(progress: Any, total: Any) -> float | None:
    """``progress / total`` within 0 … 1, or ``None`` when it cannot be told."""
    if not isinstance(progress, int | float) or isinstance(progress, bool):
        return None
    if not isinstance(total, int | float) or isinstance(total, bool) or total <= 0:
        return None
    return min(max(float(progress) / float(total), 0.0), 1.0)
