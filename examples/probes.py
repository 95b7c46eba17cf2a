"""Handlers that report on how they are called, for tests of the data plane's limits."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

_lock = threading.Lock()
_running = 0
_most = 0


def concurrency_probe(payload: dict[str, Any]) -> dict[str, Any]:
    """Sleeps ``payload["seconds"]`` and returns the most calls this runtime has seen running at
    once so far (``most_at_once``)."""
    global _running, _most
    with _lock:
        _running += 1
        _most = max(_most, _running)
    try:
        time.sleep(float(payload.get("seconds", 0.5)))
    finally:
        with _lock:
            _running -= 1
    with _lock:
        return {**payload, "most_at_once": _most}


def mutate_then_finish(payload: dict[str, Any]) -> None:
    """Changes its payload in place and ends the route: what goes on is the payload as it
    arrived (the handler works on its own copy, in either execution mode)."""
    payload["changed by the handler"] = True
    return None


def environment(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with the GPU environment its replica got from the agent merged in."""
    return {
        **payload,
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "BACKEND_GPU_SHARE": os.environ.get("BACKEND_GPU_SHARE"),
    }
