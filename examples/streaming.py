"""Streaming and progress-reporting handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import Any

from ai.backend.runtime import Context


def tokens(payload: dict[str, Any]) -> Generator[dict[str, Any], None, dict[str, Any]]:
    """Yields one partial per word; the full text is the result."""
    words = str(payload["text"]).split()
    for word in words:
        yield {"token": word}
    return {"text": " ".join(words), "tokens": len(words)}


async def async_tokens(payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Yields one partial per word; the last yield is the result."""
    for word in str(payload["text"]).split():
        yield {"token": word}


def with_progress(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    steps = int(payload.get("steps", 3))
    for step in range(1, steps + 1):
        ctx.progress(step, total=steps, message=f"step {step}")
    return {"steps": steps, "job_id": ctx.job_id, "trace": ctx.headers.get("trace_id")}


async def progress_then_answer(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Reports progress and answers without awaiting anything in between."""
    ctx.progress(1, total=1, message="done")
    return payload
