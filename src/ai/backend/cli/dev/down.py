"""``dev down``: agents first (so that nothing restarts a replica), then their replicas, the
gateway, the manager, and the embedded Redis and PostgreSQL; each with SIGTERM (PostgreSQL:
SIGINT, its fast shutdown), SIGKILL after the grace period. The data and the dev keypairs stay
for the next ``dev up`` unless ``--purge`` deletes the state folder."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
from pathlib import Path

from ai.backend.client.config import client_config_path

from .client_config import restore_client_config
from .console import StepPrinter
from .embedded_processes import (
    find_embedded_redis,
    find_postmaster,
    is_embedded_postmaster,
    is_embedded_redis,
)
from .paths import DevPaths
from .processes import StopOutcome, is_running, stop_processes
from .record import (
    DataServiceRecord,
    ProcessRecord,
    ServiceKind,
    ServiceRecord,
    StackRecord,
    save_record,
)


def replica_processes(agents_dir: Path) -> list[ProcessRecord]:
    """The processes the agents under ``agents_dir`` recorded for their replicas."""
    found = []
    for state in sorted(agents_dir.glob("*/replicas/*/state.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            for process in json.loads(state.read_text())["processes"].values():
                found.append(
                    ProcessRecord(pid=int(process["pid"]), start_time=int(process["start_time"]))
                )
    return found


def _report(printer: StepPrinter, name: str, outcomes: list[StopOutcome], grace: float) -> None:
    if not outcomes or not any(o.was_running for o in outcomes):
        printer.note(f"{name}: not running")
        return
    killed = [o for o in outcomes if o.killed]
    pids = ", ".join(str(o.process.pid) for o in outcomes if o.was_running)
    if killed:
        printer.note(f"{name} (pid {pids}): killed after {grace:g} s")
    else:
        printer.info(f"{name} (pid {pids}) stopped")


async def stop_stack(
    record: StackRecord, paths: DevPaths, printer: StepPrinter, *, grace: float
) -> None:
    agents = record.agents()
    by_kind = {
        kind: [s for s in record.services.values() if s.kind is kind] for kind in ServiceKind
    }

    async def stop(name: str, processes: list[ProcessRecord], signum: int = signal.SIGTERM) -> None:
        outcomes = await stop_processes(processes, grace=grace, signum=signum)
        _report(printer, name, outcomes, grace)

    def of(services: list[ServiceRecord]) -> list[ProcessRecord]:
        return [s.process for s in services]

    if agents:
        await stop(", ".join(a.name for a in agents), of(agents))
    replicas = [p for p in replica_processes(paths.agents_dir) if is_running(p)]
    if replicas:
        await stop("replicas", replicas)
    for kind in (ServiceKind.GATEWAY, ServiceKind.MANAGER):
        for service in by_kind[kind]:
            await stop(service.name, [service.process])
    for data, signum in ((record.redis, signal.SIGTERM), (record.db, signal.SIGINT)):
        if data is None or not data.embedded or data.process is None:
            continue
        name = f"{data.name} (embedded)"
        if is_running(data.process) and not _is_data_server(data):
            printer.note(
                f"{name}: pid {data.process.pid} is not its server (a record of an earlier"
                " version may name another program): left alone"
            )
            continue
        await stop(name, [data.process], signum)
    await stop_unrecorded_data_services(paths, printer, grace=grace)
    save_record(paths.stack_file, record)


def _is_data_server(data: DataServiceRecord) -> bool:
    """Whether the recorded embedded server's process runs the server on its data folder."""
    if data.process is None or data.data_dir is None:
        return False
    if data.name == "postgres":
        return is_embedded_postmaster(data.process.pid, data.data_dir)
    return is_embedded_redis(data.process.pid, data.data_dir)


async def stop_unrecorded_data_services(
    paths: DevPaths, printer: StepPrinter, *, grace: float
) -> None:
    """Stop an embedded PostgreSQL or Redis that runs on the state folder's data without being
    recorded (a `dev up` interrupted while it started them), found by their pid files."""
    found = [
        ("redis (embedded, not recorded)", find_embedded_redis(paths.redis_dir), signal.SIGTERM),
        ("postgres (embedded, not recorded)", find_postmaster(paths.postgres_dir), signal.SIGINT),
    ]
    for name, process, signum in found:
        if process is not None:
            outcomes = await stop_processes([process], grace=grace, signum=signum)
            _report(printer, name, outcomes, grace)


def purge(record: StackRecord | None, paths: DevPaths, printer: StepPrinter) -> None:
    """Delete the state folder, and ``client.toml`` when it holds the stack's admin keypair
    (putting back the one ``dev up`` kept aside, if any)."""
    if record is not None:
        removed, restored = restore_client_config(record)
        if restored is not None:
            printer.info(f"restored {client_config_path()} from {restored}")
        elif removed:
            printer.info(f"deleted {client_config_path()}")
        for data in (record.db, record.redis):
            if data is not None and not data.embedded:
                printer.note(
                    f"{data.name} at {data.url} is not the stack's own: its data stays there"
                )
    if paths.root.exists():
        shutil.rmtree(paths.root)
        printer.info(f"deleted {paths.root}")
