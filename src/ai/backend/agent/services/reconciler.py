"""Makes the replicas running here match the desired ones of the manager's latest reply.

A desired replica that is not here is started; one that is here but no longer desired is
drained (reported ``terminating`` until its processes are gone, then left out of the reports:
absence means terminated to the manager). On start, the replicas a previous agent left behind
are adopted when any of their processes still runs (the same pid with the same start time);
the others are cleaned up (leftover processes killed, state and socket removed, logs kept).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from ai.backend.common.dto.agent import DesiredReplica, ReplicaReport
from ai.backend.common.log import BraceStyleAdapter

from ..clients.processes import is_same_process, kill_leftover
from .launch import LaunchSettings
from .replica_files import ReplicaPaths, ReplicaState, replicas_dir
from .supervisor import ReplicaSupervisor, SupervisionSettings

log = BraceStyleAdapter(logging.getLogger(__spec__.name))


def _kill_recorded_processes(paths: ReplicaPaths) -> None:
    """Kill what a state file we cannot use still names (a best effort on a damaged file)."""
    try:
        data = json.loads(paths.state.read_text())
        records = [(int(p["pid"]), int(p["start_time"])) for p in data["processes"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    for pid, start_time in records:
        if kill_leftover(pid, start_time):
            log.warning("killed leftover process {} of {}", pid, paths.root.name)


class Reconciler:
    def __init__(
        self, *, state_dir: Path, supervision: SupervisionSettings, launch: LaunchSettings
    ) -> None:
        self.state_dir = state_dir
        self.supervision = supervision
        self.launch = launch
        self.supervisors: dict[str, ReplicaSupervisor] = {}
        self._draining: dict[str, asyncio.Task[None]] = {}

    def _supervisor(
        self, desired: DesiredReplica, adopted: ReplicaState | None = None
    ) -> ReplicaSupervisor:
        return ReplicaSupervisor(
            desired,
            paths=ReplicaPaths.of(self.state_dir, desired.replica_id),
            supervision=self.supervision,
            launch=self.launch,
            adopted=adopted,
        )

    async def adopt_existing(self) -> list[str]:
        """Adopt or clean up what a previous agent left; the ids of the adopted replicas."""
        folder = replicas_dir(self.state_dir)
        adopted = []
        for state_file in sorted(folder.glob("*/state.json")) if folder.is_dir() else []:
            paths = ReplicaPaths(state_file.parent)
            try:
                state = paths.read_state()
            except (OSError, ValueError) as e:
                log.warning("cannot adopt replica {} ({}); cleaning up", paths.root.name, e)
                _kill_recorded_processes(paths)
                paths.clear_runtime_files(None)
                continue
            alive = any(is_same_process(p.pid, p.start_time) for p in state.processes.values())
            if not alive or state.desired.replica_id in self.supervisors:
                log.info("replica {} left nothing running; cleaning up", paths.root.name)
                paths.clear_runtime_files(state.socket)
                continue
            supervisor = self._supervisor(state.desired, state)
            self.supervisors[supervisor.replica_id] = supervisor
            await supervisor.start()
            adopted.append(supervisor.replica_id)
        return adopted

    async def reconcile(self, desired: list[DesiredReplica]) -> None:
        wanted = {replica.replica_id: replica for replica in desired}
        for replica_id, supervisor in list(self.supervisors.items()):
            if replica_id not in wanted and replica_id not in self._draining:
                supervisor.mark_stopping()
                self._draining[replica_id] = asyncio.create_task(
                    self._drain(supervisor), name=f"drain-{replica_id}"
                )
        for replica_id, replica in wanted.items():
            if replica_id in self.supervisors:
                continue  # a replica's allocation never changes; a new spec is a new replica
            log.info(
                "starting replica {} of {} (generation {}, devices {})",
                replica_id,
                replica.actor_name,
                replica.generation,
                replica.device_ids or "none",
            )
            supervisor = self._supervisor(replica)
            self.supervisors[replica_id] = supervisor
            await supervisor.start()

    async def _drain(self, supervisor: ReplicaSupervisor) -> None:
        try:
            await supervisor.stop()
        except Exception:
            # its processes may still run (and hold devices): it stays reported `terminating`,
            # and the next reconciliation drains it again
            log.exception("draining replica {} failed; trying again", supervisor.replica_id)
        else:
            self.supervisors.pop(supervisor.replica_id, None)
        finally:
            self._draining.pop(supervisor.replica_id, None)

    def reports(self) -> list[ReplicaReport]:
        return [supervisor.report() for supervisor in self.supervisors.values()]

    async def stop_all(self) -> None:
        """Drain every replica (what an empty desired list does) and wait until all are gone."""
        await self.reconcile([])
        await asyncio.gather(*list(self._draining.values()), return_exceptions=True)

    async def detach(self) -> None:
        """Stop supervising and leave every replica running, for the next agent to adopt;
        drains in progress are finished first."""
        await asyncio.gather(*list(self._draining.values()), return_exceptions=True)
        for supervisor in list(self.supervisors.values()):
            await supervisor.detach()
        self.supervisors.clear()
