"""``dev down``: agents first (so that nothing restarts a replica), then their replicas, the
gateway, the manager, and the embedded Redis and PostgreSQL; each with SIGTERM (PostgreSQL:
SIGINT, its fast shutdown), SIGKILL after the grace period. The data and the dev keypairs stay
for the next ``dev up`` unless ``--purge`` deletes the state folder."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tomllib
from pathlib import Path

from ai.backend.client.config import client_config_path

from .console import StepPrinter
from .paths import DevPaths
from .processes import StopOutcome, is_running, stop_processes
from .record import ProcessRecord, ServiceKind, ServiceRecord, StackRecord, save_record


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
    if record.redis is not None and record.redis.embedded and record.redis.process:
        await stop("redis (embedded)", [record.redis.process])
    if record.db is not None and record.db.embedded and record.db.process:
        await stop("postgres (embedded)", [record.db.process], signal.SIGINT)
    save_record(paths.stack_file, record)


def purge(record: StackRecord | None, paths: DevPaths, printer: StepPrinter) -> None:
    """Delete the state folder, and ``client.toml`` when it holds the stack's admin keypair."""
    if record is not None:
        _remove_client_config(record)
        for data in (record.db, record.redis):
            if data is not None and not data.embedded:
                printer.note(
                    f"{data.name} at {data.url} is not the stack's own: its data stays there"
                )
    if paths.root.exists():
        shutil.rmtree(paths.root)
        printer.info(f"deleted {paths.root}")


def _remove_client_config(record: StackRecord) -> None:
    admin = record.keypairs.get("admin")
    path = client_config_path()
    if admin is None or not path.is_file():
        return
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
        written = tomllib.loads(path.read_text()).get("client", {})
        if written.get("access_key") == admin.access_key:
            path.unlink()
