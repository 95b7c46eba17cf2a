"""A class handler: ``__init__`` runs once per runtime, state persists across calls."""

from __future__ import annotations

from typing import Any


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, payload: Any) -> dict[str, Any]:
        self.calls += 1
        return {"calls": self.calls, "payload": payload}
