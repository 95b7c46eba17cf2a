"""The stack's processes: started detached (a session of their own, output appended to a log
file) so that they outlive ``dev up``; known by pid and start time; stopped with SIGTERM, then
SIGKILL after a deadline.

Exits are awaited through a pidfd (readable once the process has exited, whether or not it is
our child); where pidfds are missing, ``/proc`` is polled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from .errors import DevStackError
from .record import ProcessRecord

CLI_MODULE: Final = "ai.backend.cli"
EXIT_POLL_INTERVAL: Final = 0.1  # without pidfds only
CLI_TIMEOUT: Final = 120.0


def child_environment(
    overrides: Mapping[str, str] | None = None, *, drop: Iterable[str] = ()
) -> dict[str, str]:
    """This process's environment for a child that runs the platform's code: ``PYTHONPATH`` is
    the absolute form of our ``sys.path`` (so the child imports exactly what we import, also
    from a test sandbox where ``src`` is a relative entry), ``drop`` removed, ``overrides``
    added."""
    dropped = set(drop)
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
    env.update(overrides or {})
    return env


def cli_command(*args: str) -> list[str]:
    """``python -m ai.backend.cli args…`` under this interpreter."""
    return [sys.executable, "-m", CLI_MODULE, *args]


async def run_cli(args: list[str], *, drop_env: Iterable[str] = ()) -> str:
    """Run ``backend.ai args…`` to completion; its stdout, or :class:`DevStackError` with its
    stderr."""
    process = await asyncio.create_subprocess_exec(
        *cli_command(*args),
        env=child_environment(drop=drop_env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise DevStackError(f"`backend.ai {' '.join(args)}` did not finish in time") from None
    if process.returncode != 0:
        raise DevStackError(
            f"`backend.ai {' '.join(args)}` failed (exit status {process.returncode})",
            detail=stderr.decode(errors="replace").strip()[-4000:],
        )
    return stdout.decode()


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot), or ``None`` when no such
    process lives (an exited one not yet reaped counts as gone). The agent identifies its
    replicas' processes the same way (``ai.backend.agent.clients.processes``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_command_line(pid: int) -> list[str] | None:
    """The arguments of process ``pid`` (``/proc/<pid>/cmdline``), ``None`` when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [os.fsdecode(arg) for arg in raw.split(b"\0")[:-1]] if raw else []


def process_executable(pid: int) -> Path | None:
    """The program process ``pid`` runs (``/proc/<pid>/exe``), ``None`` when it is gone or not
    ours to inspect."""
    try:
        target = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    return Path(target.removesuffix(" (deleted)"))  # the program was replaced since it started


def process_working_dir(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def identify(pid: int) -> ProcessRecord | None:
    start_time = process_start_time(pid)
    return None if start_time is None else ProcessRecord(pid=pid, start_time=start_time)


def is_running(process: ProcessRecord | None) -> bool:
    return process is not None and process_start_time(process.pid) == process.start_time


def _listening_socket_inodes(port: int) -> set[str] | None:
    """The inodes of the TCP sockets listening on ``port`` (``None`` without ``/proc``)."""
    inodes: set[str] = set()
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not any(table.exists() for table in tables):
        return None
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_address, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local_address.rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(inode)
    return inodes


def owns_listener(process: ProcessRecord, port: int) -> bool:
    """Whether ``process`` holds the socket listening on ``port`` (so that an answer on the
    port is its own, not another program's). True where ``/proc`` cannot tell."""
    inodes = _listening_socket_inodes(port)
    if inodes is None:
        return True
    fd_dir = Path(f"/proc/{process.pid}/fd")
    try:
        descriptors = list(fd_dir.iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def signal_process(process: ProcessRecord, signum: int) -> bool:
    """Send ``signum`` to ``process`` if it still runs (same pid and start time); whether it was
    sent. Through a pidfd where there are pidfds, so that a pid recycled between the check and
    the signal cannot receive it."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):  # no pidfds: check, then signal
        if not is_running(process):
            return False
        try:
            os.kill(process.pid, signum)
        except ProcessLookupError:
            return False
        return True
    try:
        if not is_running(process):  # the pidfd pins the process checked here
            return False
        try:
            signal.pidfd_send_signal(pidfd, signum)
        except ProcessLookupError:
            return False
        return True
    finally:
        os.close(pidfd)


@dataclass
class StartedProcess:
    record: ProcessRecord
    popen: subprocess.Popen[bytes]
    log: Path


def spawn_detached(
    command: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> StartedProcess:
    """Start ``command`` in a session of its own with stdin from /dev/null and its output
    appended to ``log`` (after a line saying when and what was started)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        output.write(f"=== {stamp} started: {' '.join(command)}\n".encode())
        output.flush()
        popen = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = identify(popen.pid)
    if record is None:  # it already exited: identify it by pid alone, it is not running
        record = ProcessRecord(pid=popen.pid, start_time=-1)
    return StartedProcess(record, popen, log)


def exit_description(started: StartedProcess) -> str:
    code = started.popen.poll()
    if code is None:
        return "is still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


async def wait_exit(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` exited within ``timeout`` seconds (a zombie counts as exited)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        return await _poll_exit(pid, timeout)
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(pidfd, exited.set)
    try:
        await asyncio.wait_for(exited.wait(), timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def _poll_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_start_time(pid) is not None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(EXIT_POLL_INTERVAL)  # no pidfd: poll /proc
    return True


@dataclass(frozen=True)
class StopOutcome:
    process: ProcessRecord
    was_running: bool
    killed: bool  # SIGKILL was needed


async def stop_processes(
    processes: Sequence[ProcessRecord], *, grace: float, signum: int = signal.SIGTERM
) -> list[StopOutcome]:
    """Send ``signum`` to each running process, wait up to ``grace`` seconds for all of them,
    then SIGKILL those left and wait for them to go."""
    running = [p for p in processes if signal_process(p, signum)]
    deadline = time.monotonic() + grace
    exited = await asyncio.gather(
        *(wait_exit(p.pid, max(deadline - time.monotonic(), 0.0)) for p in running)
    )
    killed = set()
    for process, gone in zip(running, exited, strict=True):
        if not gone and signal_process(process, signal.SIGKILL):
            killed.add(process.pid)
    await asyncio.gather(*(wait_exit(pid, 5.0) for pid in killed))
    outcomes = [StopOutcome(p, True, p.pid in killed) for p in running]
    outcomes += [StopOutcome(p, False, False) for p in processes if p not in running]
    return outcomes
