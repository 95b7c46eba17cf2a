"""Agent ⇄ manager DTOs: the heartbeat an agent sends and the desired replicas it gets back."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, Field

from ..types.slots import ResourceSlot
from ..types.units import BinarySize
from .actor_spec import ActorSpec
from .base import SYSTEM_CONTEXT, StrictModel, UserActorName  # noqa: F401  (re-exported)


class AgentStatus(StrEnum):
    ALIVE = "alive"
    LOST = "lost"
    TERMINATED = "terminated"


class ReplicaStatus(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    STARTING = "starting"
    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"
    LOST = "lost"  # its agent stopped answering; a new replica replaces it elsewhere


ACTIVE_REPLICA_STATUSES = frozenset(
    {ReplicaStatus.SCHEDULED, ReplicaStatus.STARTING, ReplicaStatus.RUNNING}
)
"""Placed and wanted: the agent is told to run these."""

ALLOCATED_REPLICA_STATUSES = ACTIVE_REPLICA_STATUSES | {ReplicaStatus.TERMINATING}
"""Holding slots on their agent: used slots are the sum of these replicas' allocations."""


class DeviceInfo(StrictModel):
    """One accelerator as the agent sees it (from NVML, nvidia-smi or the mock config)."""

    id: str = Field(min_length=1)
    kind: str = "cuda"
    model: str
    memory: BinarySize
    uuid: str | None = None


class ModelSignature(StrictModel):
    """A KServe-style model a runtime registered with ``@app.model``."""

    name: str = Field(min_length=1)
    version: str = "1"
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    outputs: list[dict[str, Any]] = Field(default_factory=list)


class RuntimeHello(StrictModel):
    """What the runtime announced on connect (DESIGN.md §4.3 ``hello``)."""

    protocol: int = Field(ge=1)
    handler: str
    concurrency: int = Field(ge=1)
    models: list[ModelSignature] = Field(default_factory=list)


class ReplicaReport(StrictModel):
    replica_id: str
    actor_name: UserActorName
    generation: int = Field(ge=0)
    status: ReplicaStatus
    status_info: str | None = None
    restarts: int = Field(default=0, ge=0)
    runtime: RuntimeHello | None = None


class AgentHeartbeat(StrictModel):
    """``POST /v1/agents/{id}/heartbeat`` body."""

    agent_id: str = Field(min_length=1, max_length=64)
    addr: str = Field(max_length=256)
    version: str = Field(max_length=64)
    slots_total: ResourceSlot
    devices: list[DeviceInfo] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    replicas: list[ReplicaReport] = Field(default_factory=list)
    sent_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    # this agent process's id and its heartbeat count: a heartbeat older than one the manager
    # already applied (a retried request overtaken by the next) changes nothing
    boot_id: str | None = Field(default=None, max_length=64)
    seq: int = Field(default=0, ge=0)


class DesiredReplica(StrictModel):
    """A replica the manager wants running on the agent, with its concrete allocation."""

    replica_id: str
    actor_name: UserActorName
    generation: int = Field(ge=0)
    spec: ActorSpec
    slots: ResourceSlot
    device_ids: list[str] = Field(default_factory=list)

    def gpu_environment(self) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` (the agent's device ids, empty for CPU-only replicas) and,
        for a fraction of a GPU, ``BACKEND_GPU_SHARE`` (DESIGN.md §6a)."""
        env = {"CUDA_VISIBLE_DEVICES": ",".join(self.device_ids)}
        share = self.slots.amount("cuda.shares")
        if share:
            env["BACKEND_GPU_SHARE"] = format(share.normalize(), "f")
        return env


class HeartbeatReply(StrictModel):
    """The manager's answer: every replica the agent should run now. Parse it with
    ``model_validate(data, context=SYSTEM_CONTEXT)``: the crew's replicas are among them."""

    desired: list[DesiredReplica] = Field(default_factory=list)
