"""Helpers that make expected values of tests exact yet readable."""

from __future__ import annotations

from typing import Any

VARYING_EVENT_FIELDS = ("at", "envelope_id")


def without_times(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Job events without the fields that differ from run to run (time, envelope id)."""
    return [{k: v for k, v in e.items() if k not in VARYING_EVENT_FIELDS} for e in events]
