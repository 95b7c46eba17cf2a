"""Agent replicas in tests: desired replicas as the manager would send them, and waiting on
what a :class:`~ai.backend.agent.services.reconciler.Reconciler` reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ai.backend.agent.services.reconciler import Reconciler
from ai.backend.agent.services.supervisor import SupervisionSettings
from ai.backend.common.dto.agent import SYSTEM_CONTEXT, DesiredReplica, ReplicaReport

from .waiting import wait_until

__all__ = ["wait_until"]  # re-exported for the agent's tests

FAST_SUPERVISION = SupervisionSettings(
    restart_backoff=0.1, restart_backoff_max=0.5, stable_period=60, crash_limit=3, kill_grace=1
)
CREW = ("happy-end", "error-end")
ReconcilerFactory = Callable[[], Reconciler]


def desired_replica(
    replica_id: str,
    actor: str,
    handler: str = "examples.pipeline:double",
    *,
    slots: dict[str, Any] | None = None,
    device_ids: list[str] | None = None,
    **spec: Any,
) -> DesiredReplica:
    return DesiredReplica.model_validate(
        {
            "replica_id": replica_id,
            "actor_name": actor,
            "generation": 1,
            "spec": {"name": actor, "handler": handler, "timeout": "2s", **spec},
            "slots": slots or {"cpu": 1},
            "device_ids": device_ids or [],
        },
        context=SYSTEM_CONTEXT,
    )


def crew_replicas() -> list[DesiredReplica]:
    return [desired_replica(f"crew-{name}", name, "crew:member") for name in CREW]


def report_of(reconciler: Reconciler, replica_id: str) -> ReplicaReport | None:
    return next((r for r in reconciler.reports() if r.replica_id == replica_id), None)


async def wait_status(
    reconciler: Reconciler, replica_id: str, status: str, timeout: float = 30
) -> ReplicaReport:
    def reached() -> bool:
        report = report_of(reconciler, replica_id)
        return report is not None and report.status == status

    try:
        await wait_until(reached, what=f"replica {replica_id} {status}", timeout=timeout)
    except TimeoutError:
        raise AssertionError(
            f"replica {replica_id} is {report_of(reconciler, replica_id)}, not {status}\n"
            + replica_logs(reconciler, replica_id)
        ) from None
    report = report_of(reconciler, replica_id)
    assert report is not None
    return report


def replica_logs(reconciler: Reconciler, replica_id: str) -> str:
    folder = reconciler.state_dir / "replicas" / replica_id
    return "\n".join(
        f"===== {p.name} =====\n{p.read_text(errors='replace')}" for p in folder.glob("*.log")
    )
