"""Where the dev stack keeps its state (``$XDG_STATE_HOME/backend.ai``, default
``~/.local/state/backend.ai``)::

    dev/stack.json          what runs: services, pids, ports, URLs, logs, the dev keypairs
    dev/config/*.toml       each service's configuration (``--config`` of its process)
    dev/tools/              the gateway's tool files (``[tools] path``)
    dev/.lock               held while ``dev up`` or ``dev down`` runs
    logs/<service>.log      each process's output
    agents/<agent id>/      an agent's state (its replicas' files and logs)
    postgres/               the embedded PostgreSQL's data (its own log: postgres/log)
    redis/                  the embedded Redis's data and socket
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .errors import DevStackError

STATE_DIR_NAME: Final = "backend.ai"
MAX_SOCKET_PATH: Final = 100  # sun_path holds 107 bytes and a NUL; keep a margin


def state_home() -> Path:
    configured = os.environ.get("XDG_STATE_HOME")
    return Path(configured) if configured else Path.home() / ".local" / "state"


def _fits(path: Path) -> bool:
    return len(os.fsencode(str(path.absolute()))) <= MAX_SOCKET_PATH


def unix_socket_path(preferred: Path) -> Path:
    """``preferred`` when a Unix socket fits there, else a short path derived from it (the same
    one every time) in a folder of its own under ``$XDG_RUNTIME_DIR`` (this user's), else under
    the temporary directory (shared: :func:`ensure_private_dir` checks it before use)."""
    if _fits(preferred):
        return preferred
    digest = hashlib.sha256(str(preferred.absolute()).encode()).hexdigest()[:16]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and os.path.isabs(runtime_dir) and os.path.isdir(runtime_dir):
        candidate = Path(runtime_dir) / f"bai-dev-{digest}" / preferred.name
        if _fits(candidate):
            return candidate
    return Path(tempfile.gettempdir()) / f"bai-dev-{os.getuid()}-{digest}" / preferred.name


def ensure_private_dir(folder: Path) -> None:
    """Create ``folder`` (its parent must exist) readable only by this user, or check that the
    one there is such a folder: a directory, not a link, owned by this user, mode 0700. In a
    shared place (``/tmp``) another user could have made it first, to read or replace what
    goes in it."""
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(folder, 0o700)  # whatever the umask
    found = os.lstat(folder)
    problem = None
    if stat.S_ISLNK(found.st_mode):
        problem = "is a link"
    elif not stat.S_ISDIR(found.st_mode):
        problem = "is not a directory"
    elif found.st_uid != os.getuid():
        problem = f"belongs to uid {found.st_uid}, not to this user (uid {os.getuid()})"
    elif stat.S_IMODE(found.st_mode) != 0o700:
        problem = f"has mode {stat.S_IMODE(found.st_mode):o}, not 700"
    if problem is not None:
        raise DevStackError(
            f"{folder} {problem}: refusing to put the stack's sockets there; remove it"
            " (or set XDG_RUNTIME_DIR to a folder of your own)"
        )


def write_private_file(path: Path, text: str) -> None:
    """Write ``path`` atomically with mode 0600 from the first byte: a new file beside it
    (``O_EXCL``), then a rename over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class DevPaths:
    root: Path

    @classmethod
    def discover(cls) -> DevPaths:
        return cls(state_home() / STATE_DIR_NAME)

    @property
    def dev_dir(self) -> Path:
        return self.root / "dev"

    @property
    def stack_file(self) -> Path:
        return self.dev_dir / "stack.json"

    @property
    def lock_file(self) -> Path:
        return self.dev_dir / ".lock"

    @property
    def config_dir(self) -> Path:
        return self.dev_dir / "config"

    @property
    def tools_dir(self) -> Path:
        return self.dev_dir / "tools"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def agents_dir(self) -> Path:
        return self.root / "agents"

    @property
    def postgres_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def redis_socket(self) -> Path:
        return unix_socket_path(self.redis_dir / "redis.sock")

    def log_file(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    def config_file(self, service: str) -> Path:
        return self.config_dir / f"{service}.toml"

    def agent_state_dir(self, agent_id: str) -> Path:
        return self.agents_dir / agent_id

    def prepare(self) -> None:
        """Create the folders (private: configs and stack.json hold secret keys)."""
        for folder in (self.root, self.dev_dir, self.config_dir, self.tools_dir, self.agents_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.logs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


@contextlib.contextmanager
def hold_lock(paths: DevPaths, *, waiting_message: Callable[[], None]) -> Iterator[None]:
    """One ``dev up`` / ``dev down`` at a time: an exclusive lock on ``dev/.lock``
    (``waiting_message`` is called when another one holds it, before waiting for it)."""
    paths.dev_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(paths.lock_file, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting_message()
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
