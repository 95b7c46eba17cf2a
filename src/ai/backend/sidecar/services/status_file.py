"""``--status-file``: tells a supervisor (the agent) that this sidecar is serving.

Once the consumer is registered and, for an actor with a runtime, the runtime said hello, the
file holds ``{"pid": <sidecar pid>, "state": "running", "hello": <the hello frame or null>}``;
it is rewritten on every new hello (a restarted runtime). Written atomically (temporary file,
then rename), so a reader never sees half of it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ai.backend.common.files import write_atomically
from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


class StatusFile:
    def __init__(self, path: Path, *, needs_hello: bool) -> None:
        self.path = path
        self._needs_hello = needs_hello
        self._hello: dict[str, Any] | None = None
        self._registered = False

    def registered(self) -> None:
        self._registered = True
        self._write()

    def hello(self, frame: dict[str, Any]) -> None:
        self._hello = frame
        self._write()

    def _write(self) -> None:
        if not self._registered or (self._needs_hello and self._hello is None):
            return
        data = {"pid": os.getpid(), "state": "running", "hello": self._hello}
        try:
            write_atomically(self.path, json.dumps(data))
        except OSError as e:
            log.error("cannot write the status file {}: {}", self.path, e)
