"""Processes of replicas: spawned in sessions of their own (they outlive the agent), or adopted
from a previous agent by pid and start time, and awaited without blocking the event loop.

A process is identified by its pid *and* its start time (field 22 of ``/proc/<pid>/stat``, in
clock ticks since boot), so that a recycled pid is never mistaken for it. Exit is noticed
through a pidfd (readable once the process has exited, for children and strangers alike); where
pidfds are missing, ``/proc`` is polled. Children are reaped here (``waitpid``) for their exit
status; an adopted process is not our child, so its status is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

POLL_INTERVAL = 0.5  # without pidfds only


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``, or ``None`` when there is no such (living) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    if fields[0] in ("Z", "X"):  # exited, not yet reaped
        return None
    return int(fields[19])


def is_same_process(pid: int, start_time: int) -> bool:
    return process_start_time(pid) == start_time


EXIT_BAD_HANDLER = 3  # ai.backend.runtime.entry.EXIT_BAD_HANDLER
EXIT_STUCK = 4  # ai.backend.runtime.server.EXIT_STUCK (the runtime's watchdog)
KNOWN_EXITS = {
    EXIT_BAD_HANDLER: "exit status 3 (the handler cannot be loaded)",
    EXIT_STUCK: "exit status 4 (a sync handler was stuck past its timeout)",
}


def describe_exit(status: int | None) -> str:
    """``exit status 3 (…)``, ``signal 9 (SIGKILL)``, or ``exited`` when unknown."""
    if status is None:
        return "exited"
    if status in KNOWN_EXITS:
        return KNOWN_EXITS[status]
    if status < 0:
        try:
            return f"signal {-status} ({signal.Signals(-status).name})"
        except ValueError:
            return f"signal {-status}"
    return f"exit status {status}"


class ManagedProcess:
    """A process of a replica; :meth:`wait` may be awaited by many tasks at once."""

    def __init__(self, pid: int, start_time: int, *, is_child: bool) -> None:
        self.pid = pid
        self.start_time = start_time
        self.is_child = is_child
        self.returncode: int | None = None
        self._exited = asyncio.Event()
        self._watch = asyncio.create_task(self._watch_exit(), name=f"watch-{pid}")

    @classmethod
    def adopt(cls, pid: int, start_time: int) -> ManagedProcess | None:
        """The process ``pid`` if it still runs with ``start_time``, else ``None``."""
        if not is_same_process(pid, start_time):
            return None
        return cls(pid, start_time, is_child=False)

    @property
    def alive(self) -> bool:
        return not self._exited.is_set()

    async def wait(self) -> int | None:
        """Its exit status (negative: the signal), ``None`` when not our child."""
        await self._exited.wait()
        return self.returncode

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process (SIGKILL: to its whole session's group)."""
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if signum == signal.SIGKILL:
                os.killpg(self.pid, signum)  # leader of its own group: its children go too
            else:
                os.kill(self.pid, signum)

    async def _watch_exit(self) -> None:
        try:
            await self._await_exit()
        finally:
            if self.is_child:
                self.returncode = self._reap()
            self._exited.set()

    async def _await_exit(self) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (OSError, AttributeError):
            pidfd = None
        if pidfd is None or (not self.is_child and not is_same_process(self.pid, self.start_time)):
            if pidfd is not None:
                os.close(pidfd)
            while is_same_process(self.pid, self.start_time):
                await asyncio.sleep(POLL_INTERVAL)
            return
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def exited() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(pidfd, exited)
        try:
            await readable
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)

    def _reap(self) -> int | None:
        try:
            _pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if _pid == 0:
            return None
        return os.waitstatus_to_exitcode(status)

    async def close(self) -> None:
        """Stop watching (the process keeps running)."""
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch


def _popen(args: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            list(args),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.returncode = 0  # reaped by ManagedProcess, not by Popen's own bookkeeping
    return process.pid


async def spawn(args: Sequence[str], *, env: Mapping[str, str], log_path: Path) -> ManagedProcess:
    """Start ``args`` in a session of its own, appending its output to ``log_path``. Raises
    ``OSError`` when it cannot be started (e.g. a missing interpreter)."""
    loop = asyncio.get_running_loop()
    pid = await loop.run_in_executor(None, _popen, args, env, log_path)
    start_time = process_start_time(pid)
    if start_time is None:  # gone already: still ours to reap, its status tells why
        start_time = -1
    return ManagedProcess(pid, start_time, is_child=True)


def kill_leftover(pid: int, start_time: int) -> bool:
    """SIGKILL the group of ``pid`` if that process still runs; whether it did."""
    if not is_same_process(pid, start_time):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True
