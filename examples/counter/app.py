"""A model with state. When the handler is a class, each replica creates one instance when it
starts (``__init__`` runs once: load weights, open a client, warm a cache there) and calls it for
every message, so what it keeps on ``self`` lasts from call to call::

    ./backend.ai actor apply -f examples/counter/counter.yaml
    ./backend.ai job run count --arg amount=5 --follow   # {"calls": 1, "total": 5, ...}
    ./backend.ai job run count --arg amount=2 --follow   # {"calls": 2, "total": 7, ...}

State lives in one replica's process: with several replicas each keeps its own, and a restarted
replica starts afresh (keep what must survive in a database). Sync handlers run in
``concurrency`` worker threads at once, so shared state takes a lock.
"""

from __future__ import annotations

import os
import threading
from typing import Any


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.total = 0
        self.process_id = os.getpid()  # the replica's runtime process: the same for every call
        self._lock = threading.Lock()

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        amount = int(payload.get("amount", 1))
        with self._lock:
            self.calls += 1
            self.total += amount
            return {"calls": self.calls, "total": self.total, "process_id": self.process_id}
