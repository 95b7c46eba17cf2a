"""``ctx``: what a handler that asks for it learns about the call, and how it reports progress."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

ProgressSink = Callable[[dict[str, Any]], None]


class Context:
    """The optional second parameter of a handler (detected from its signature).

    ``progress(value, total=None, message=None)`` sends a ``progress`` frame that the sidecar
    publishes as a job event; it may be called from sync handlers (in their worker thread) and
    from async ones.
    """

    __slots__ = (
        "call_id",
        "job_id",
        "envelope_id",
        "headers",
        "route",
        "attempt",
        "deadline_at",
        "_sink",
    )

    def __init__(self, call: Mapping[str, Any], sink: ProgressSink) -> None:
        self.call_id: str = call["id"]
        self.job_id: str | None = call.get("job_id")
        self.envelope_id: str | None = call.get("envelope_id")
        self.headers: dict[str, str] = dict(call.get("headers") or {})
        self.route: dict[str, Any] | None = call.get("route")
        self.attempt: int = int(call.get("attempt") or 1)
        self.deadline_at: str | None = call.get("deadline_at")
        self._sink = sink

    def progress(
        self, value: float, total: float | None = None, message: str | None = None
    ) -> None:
        frame: dict[str, Any] = {"type": "progress", "id": self.call_id, "progress": value}
        if total is not None:
            frame["total"] = total
        if message is not None:
            frame["message"] = message
        self._sink(frame)
