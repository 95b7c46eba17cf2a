"""Plain handlers for pipelines: ``examples.pipeline:double`` → ``examples.pipeline:increment``
turns ``{"value": 10}`` into ``{"value": 25}``."""

from __future__ import annotations

import time
from typing import Any

from ai.backend.runtime import Context


def echo(payload: Any) -> Any:
    return payload


def double(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "value": payload["value"] * 2}


def double_slowly(payload: dict[str, Any]) -> dict[str, Any]:
    """``double`` that takes 200 ms, like a small model call (work in flight for fault tests)."""
    time.sleep(0.2)
    return double(payload)


def increment(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "value": payload["value"] + 5}


def fan_out(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One child per item of ``payload["items"]``."""
    return [{"value": item} for item in payload["items"]]


def finish(payload: Any) -> None:
    """Ends the route here; the payload goes on unchanged."""
    return None


async def async_double(payload: dict[str, Any]) -> dict[str, Any]:
    return {"value": payload["value"] * 2}


def noop(payload: Any) -> Any:
    """The benchmark's hop: returns its input."""
    return payload


def record_headers(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Appends the headers this hop saw to ``payload["seen"]``."""
    return {**payload, "seen": [*payload.get("seen", []), ctx.headers]}


async def async_noop(payload: Any) -> Any:
    """The benchmark's hop without the thread pool."""
    return payload
