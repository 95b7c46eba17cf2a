"""The files of one replica under ``{state_dir}/replicas/{replica_id}/``.

- ``spec.yaml``: the actor's spec, for the sidecar's ``--spec``;
- ``sidecar.toml``: the sidecar's config (``shutdown_grace``), which also keeps a stray
  ``./sidecar.toml`` away;
- ``runtime.log``, ``sidecar.log``: the processes' output, appended across restarts and kept
  after the replica ends;
- ``status.json``: written by the sidecar (``--status-file``): consuming, and the runtime's hello;
- ``state.json``: pids and start times of the processes, restarts, the desired replica: what a
  restarted agent adopts.

The runtime's socket lives here too, unless the path would exceed a Unix socket's 107 bytes;
then it goes to a short directory under the system's temporary directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ai.backend.common.dto.agent import SYSTEM_CONTEXT, DesiredReplica
from ai.backend.common.files import write_atomically

SOCKET_NAME = "runtime.sock"
MAX_SOCKET_PATH = 100  # sun_path holds 107 bytes and a NUL; keep a margin
LOG_NAMES = {"runtime": "runtime.log", "sidecar": "sidecar.log"}


def replicas_dir(state_dir: Path) -> Path:
    return state_dir / "replicas"


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_time: int


@dataclass(frozen=True)
class ReplicaState:
    """What ``state.json`` holds."""

    desired: DesiredReplica
    processes: dict[str, ProcessRecord]
    restarts: int
    socket: str | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "desired": self.desired.model_dump(mode="json"),
                "processes": {
                    role: {"pid": p.pid, "start_time": p.start_time}
                    for role, p in self.processes.items()
                },
                "restarts": self.restarts,
                "socket": self.socket,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> ReplicaState:
        """Raises ``ValueError`` (including Pydantic's) when the file is not a valid state."""
        data: Any = json.loads(text)
        processes = {
            str(role): ProcessRecord(int(p["pid"]), int(p["start_time"]))
            for role, p in data.get("processes", {}).items()
        }
        return cls(
            desired=DesiredReplica.model_validate(data["desired"], context=SYSTEM_CONTEXT),
            processes=processes,
            restarts=int(data.get("restarts", 0)),
            socket=data.get("socket"),
        )


@dataclass(frozen=True)
class ReplicaPaths:
    root: Path

    @classmethod
    def of(cls, state_dir: Path, replica_id: str) -> ReplicaPaths:
        return cls(replicas_dir(state_dir) / replica_id)

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def sidecar_config(self) -> Path:
        return self.root / "sidecar.toml"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    def log(self, role: str) -> Path:
        return self.root / LOG_NAMES[role]

    def socket(self) -> Path:
        """Where the runtime listens: in the replica's folder when the path is short enough."""
        local = self.root / SOCKET_NAME
        if len(os.fsencode(str(local.absolute()))) <= MAX_SOCKET_PATH:
            return local
        digest = hashlib.sha256(str(self.root.absolute()).encode()).hexdigest()[:20]
        return Path(tempfile.gettempdir()) / f"bai-{os.getuid()}" / f"{digest}.sock"

    def prepare(self, desired: DesiredReplica, *, shutdown_grace: float) -> None:
        """Create the folder and write the spec and the sidecar's config."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # state.json holds spec.env
        socket = self.socket()
        socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        spec = desired.spec.model_dump(mode="json", exclude_none=True)
        write_atomically(self.spec, yaml.safe_dump(spec, sort_keys=False))
        write_atomically(
            self.sidecar_config,
            f"[sidecar]\nshutdown_grace = {shutdown_grace!r}\n",
        )

    def read_state(self) -> ReplicaState:
        """Raises ``OSError`` or ``ValueError``."""
        return ReplicaState.from_json(self.state.read_text())

    def write_state(self, state: ReplicaState) -> None:
        write_atomically(self.state, state.to_json())

    def read_status(self) -> dict[str, Any] | None:
        """The sidecar's status file, or ``None`` while there is none (or it is unreadable)."""
        try:
            data = json.loads(self.status.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def clear_runtime_files(self, socket: str | None) -> None:
        """Remove the state, the status and the socket; the logs stay."""
        for path in (self.state, self.status, Path(socket) if socket else self.socket()):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
