"""Supervision of one replica's processes (its runtime and sidecar, or the sidecar alone).

Each process has a keeper task that restarts it when it exits, alone: a runtime that dies is
restarted while the sidecar reconnects by itself, and vice versa. Waits between restarts grow
exponentially (``restart_backoff`` doubling up to ``restart_backoff_max``); a process that stayed
up ``stable_period`` starts over from the first wait and a clean crash count. After
``crash_limit`` crashes without such a stable period the replica is ``failed``: its processes
are stopped and not restarted again.

Status: ``starting`` until the sidecar's status file names the current sidecar and (with a
runtime) a hello written since the runtime started; then ``running``; ``terminating`` while
drained; ``failed`` as above. Draining sends SIGTERM to the sidecar (it stops consuming and
finishes what is in flight), then to the runtime once the sidecar is gone, and SIGKILL to
whatever is left after the actor's ``timeout`` + ``kill_grace``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ai.backend.common.dto.agent import (
    SYSTEM_CONTEXT,
    DesiredReplica,
    ReplicaReport,
    ReplicaStatus,
    RuntimeHello,
)
from ai.backend.common.log import BraceStyleAdapter

from ..clients.processes import EXIT_STUCK, ManagedProcess, describe_exit, spawn
from .launch import (
    RUNTIME,
    SIDECAR,
    LaunchSettings,
    roles_of,
    runtime_command,
    runtime_environment,
    sidecar_command,
    sidecar_environment,
)
from .replica_files import ProcessRecord, ReplicaPaths, ReplicaState

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

LOG_TAIL_BYTES = 4096
STATUS_INFO_TAIL = 200
MIN_RUNTIME_GRACE = 2.0  # the runtime's own SIGTERM window, even when the sidecar used it all


@dataclass(frozen=True)
class SupervisionSettings:
    restart_backoff: float = 1.0
    restart_backoff_max: float = 30.0
    stable_period: float = 60.0
    crash_limit: int = 5
    kill_grace: float = 10.0


def last_line(path: Path) -> str:
    """The last non-empty line of a log file, shortened; empty when there is none."""
    try:
        with open(path, "rb") as file:
            file.seek(0, 2)
            file.seek(max(file.tell() - LOG_TAIL_BYTES, 0))
            lines = file.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    if not lines:
        return ""
    # printable characters only: it travels in heartbeats and is stored in PostgreSQL
    return "".join(c for c in lines[-1] if c.isprintable())[:STATUS_INFO_TAIL]


class ReplicaSupervisor:
    def __init__(
        self,
        desired: DesiredReplica,
        *,
        paths: ReplicaPaths,
        supervision: SupervisionSettings,
        launch: LaunchSettings,
        adopted: ReplicaState | None = None,
    ) -> None:
        self.desired = desired
        self.paths = paths
        self.supervision = supervision
        self.launch = launch
        self.roles = roles_of(desired)
        self.restarts = adopted.restarts if adopted is not None else 0
        self.failure: str | None = None  # set once the failed replica's processes are gone
        self._failing = False
        self.stopping = False
        self._adopted = adopted
        self._socket = Path(adopted.socket) if adopted and adopted.socket else paths.socket()
        self._processes: dict[str, ManagedProcess] = {}
        self._started_at: dict[str, float] = {}  # wall clock, to judge the status file's age
        self._halted = asyncio.Event()
        self._spawn_lock = asyncio.Lock()
        self._keepers: list[asyncio.Task[None]] = []

    @property
    def replica_id(self) -> str:
        return self.desired.replica_id

    @property
    def grace(self) -> float:
        return self.desired.spec.timeout.total_seconds() + self.supervision.kill_grace

    def process(self, role: str) -> ManagedProcess | None:
        """The current (or last) process of ``role``: ``runtime`` or ``sidecar``."""
        return self._processes.get(role)

    def pids(self) -> dict[str, int]:
        return {role: p.pid for role, p in self._processes.items() if p.alive}

    async def start(self) -> None:
        """Write the replica's files, adopt what still runs, and keep every process up."""
        self.paths.prepare(self.desired, shutdown_grace=self.desired.spec.timeout.total_seconds())
        if self._adopted is not None:
            for role, record in self._adopted.processes.items():
                process = ManagedProcess.adopt(record.pid, record.start_time)
                if process is not None and role in self.roles:
                    self._processes[role] = process
                    self._started_at[role] = 0.0  # unknown: any status file is recent enough
            log.info("replica {}: adopted {}", self.replica_id, self.pids() or "nothing")
        self._keepers = [
            asyncio.create_task(self._keep(role), name=f"keep-{self.replica_id}-{role}")
            for role in self.roles
        ]

    # --- status ----------------------------------------------------------------------------

    def status(self) -> ReplicaStatus:
        if self.stopping or self._failing:  # processes may still hold the replica's devices
            return ReplicaStatus.TERMINATING
        if self.failure is not None:
            return ReplicaStatus.FAILED
        return ReplicaStatus.RUNNING if self._hello() is not None else ReplicaStatus.STARTING

    def _hello(self) -> dict[str, Any] | None:
        """The sidecar's announced hello (``{}`` without a runtime) once it applies to the
        processes running now, else ``None``."""
        sidecar = self._processes.get(SIDECAR)
        if sidecar is None or not sidecar.alive:
            return None
        status = self.paths.read_status()
        if status is None or status.get("pid") != sidecar.pid or status.get("state") != "running":
            return None
        hello = status.get("hello")
        if RUNTIME not in self.roles:
            return hello if isinstance(hello, dict) else {}
        runtime = self._processes.get(RUNTIME)
        if runtime is None or not runtime.alive or not isinstance(hello, dict):
            return None
        if hello.get("pid") == runtime.pid:
            return hello
        try:  # under a wrapper the hello's pid is another one: judge by the file's age
            written = self.paths.status.stat().st_mtime
        except OSError:
            return None
        return hello if written >= self._started_at.get(RUNTIME, 0.0) else None

    def report(self) -> ReplicaReport:
        status = self.status()
        runtime: RuntimeHello | None = None
        if status is ReplicaStatus.RUNNING:
            hello = self._hello() or {}
            fields = ("protocol", "handler", "concurrency", "models")
            if all(key in hello for key in fields[:3]):
                try:
                    runtime = RuntimeHello.model_validate(
                        {k: hello[k] for k in fields if k in hello}
                    )
                except ValidationError:
                    log.warning("replica {}: the runtime's hello is not valid", self.replica_id)
        return ReplicaReport.model_validate(
            {
                "replica_id": self.replica_id,
                "actor_name": self.desired.actor_name,
                "generation": self.desired.generation,
                "status": status,
                "status_info": self.failure,
                "restarts": self.restarts,
                "runtime": runtime,
            },
            context=SYSTEM_CONTEXT,  # the crew's replicas are reported too
        )

    # --- keeping processes up --------------------------------------------------------------

    async def _spawn(self, role: str) -> ManagedProcess:
        if role == RUNTIME:
            command = runtime_command(self.desired, self._socket, self.launch)
            env = runtime_environment(self.desired, self.launch)
        else:
            command = sidecar_command(self.desired, self.paths, self._socket, self.launch)
            env = sidecar_environment(self.desired, self.launch)
        self._started_at[role] = time.time()
        process = await spawn(command, env=env, log_path=self.paths.log(role))
        self._processes[role] = process
        self._save_state()
        log.info("replica {}: started {} (pid {})", self.replica_id, role, process.pid)
        return process

    def _save_state(self) -> None:
        self.paths.write_state(
            ReplicaState(
                desired=self.desired,
                processes={
                    role: ProcessRecord(p.pid, p.start_time) for role, p in self._processes.items()
                },
                restarts=self.restarts,
                socket=str(self._socket),
            )
        )

    async def _keep(self, role: str) -> None:
        s = self.supervision
        backoff = s.restart_backoff
        crashes = 0
        restarting = False
        while True:
            async with self._spawn_lock:
                if self._halted.is_set():
                    return
                process = self._processes.get(role)
                outcome = ""
                if process is None or not process.alive:
                    if restarting:
                        self.restarts += 1
                    try:
                        process = await self._spawn(role)
                    except OSError as e:
                        process, outcome = None, f"cannot be started: {e}"
            up_since = time.monotonic()
            exit_status: int | None = None
            if process is not None:
                exit_status = await process.wait()
                outcome = describe_exit(exit_status)
            if self._halted.is_set():
                return
            grace = self.launch.stuck_grace
            if (
                role == RUNTIME
                and exit_status == EXIT_STUCK
                and grace is not None
                and time.monotonic() - up_since >= grace  # its watchdog cannot fire sooner:
            ):  # a handler exiting with 4 on its own is a crash like any other
                # the runtime left on purpose (a sync handler stuck past its timeout): a fresh
                # one at once, and it is no crash of the replica
                log.warning(
                    "replica {}: runtime {}; starting a fresh one", self.replica_id, outcome
                )
                restarting = True
                continue
            if time.monotonic() - up_since >= s.stable_period:
                crashes, backoff = 0, s.restart_backoff
            crashes += 1
            if crashes >= s.crash_limit:
                await self._fail(role, outcome, crashes)
                return
            log.warning(
                "replica {}: {} {}; restarting in {:.1f} s ({} of {} crashes)",
                self.replica_id,
                role,
                outcome,
                backoff,
                crashes,
                s.crash_limit,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._halted.wait(), backoff)
            backoff = min(backoff * 2, s.restart_backoff_max)
            restarting = True

    async def _fail(self, role: str, outcome: str, crashes: int) -> None:
        tail = last_line(self.paths.log(role))
        failure = f"{role} {outcome} ({crashes} crashes)" + (f": {tail}" if tail else "")
        log.error("replica {} failed: {} {} ({} crashes)", self.replica_id, role, outcome, crashes)
        self._failing = True  # reported terminating until its processes are gone: the manager
        self._halted.set()  # frees a failed replica's slots at once
        async with self._spawn_lock:
            pass  # a restart in progress elsewhere has registered its process
        await self._terminate_processes()
        self.failure = failure
        self._failing = False

    # --- stopping --------------------------------------------------------------------------

    async def _terminate_processes(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        for role in (SIDECAR, RUNTIME):
            process = self._processes.get(role)
            if process is None or not process.alive:
                continue
            process.signal(signal.SIGTERM)
            wait = max(deadline - loop.time(), MIN_RUNTIME_GRACE if role == RUNTIME else 0.0)
            try:
                await asyncio.wait_for(process.wait(), wait)
            except TimeoutError:
                log.warning(
                    "replica {}: {} (pid {}) ignored SIGTERM for {:.0f} s; killing it",
                    self.replica_id,
                    role,
                    process.pid,
                    self.grace,
                )
                process.signal(signal.SIGKILL)
                await process.wait()

    def mark_stopping(self) -> None:
        """From now on: reported ``terminating``, and no process is restarted."""
        self.stopping = True
        self._halted.set()

    async def stop(self) -> None:
        """Drain the replica and remove its files but the logs (reported ``terminating``
        meanwhile)."""
        self.mark_stopping()
        async with self._spawn_lock:
            pass
        log.info("replica {}: draining", self.replica_id)
        await self._terminate_processes()
        await self._close_tasks()
        self.paths.clear_runtime_files(str(self._socket))
        log.info("replica {}: stopped", self.replica_id)

    async def detach(self) -> None:
        """Stop supervising and leave the processes running (the agent exits; a new one
        adopts them from ``state.json``)."""
        self._halted.set()
        async with self._spawn_lock:
            pass
        await self._close_tasks()

    async def _close_tasks(self) -> None:
        for task in self._keepers:
            task.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        for process in self._processes.values():
            await process.close()
