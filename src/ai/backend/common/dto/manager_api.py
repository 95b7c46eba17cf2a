"""Request and response bodies of the manager's REST API (DESIGN.md §6, §6a), shared by the
manager, the agent and the client SDK. Slot amounts travel as strings so decimals stay exact."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..types.slots import ResourceSlot
from .actor_spec import ActorSpec, ActorStatus
from .agent import AgentStatus, DeviceInfo, ReplicaStatus
from .base import StrictModel

T = TypeVar("T")
MAX_REPLICAS = 1000  # as scaling.max_replicas


class ResponseModel(BaseModel):
    """A response body: readers accept fields added by newer servers."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class LogLine(ResponseModel):
    """One line of a replica's log, one NDJSON object per line: ``GET /v1/actors/{name}/logs``
    (manager) and ``GET /v1/replicas/{id}/logs`` (agent). ``process`` is ``runtime`` or
    ``sidecar``, or ``error`` for what the manager says of an agent it could not ask or whose
    stream ended; ``line`` has no trailing newline."""

    replica_id: str
    process: str
    line: str

    def to_json(self) -> dict[str, str]:
        return {"replica_id": self.replica_id, "process": self.process, "line": self.line}


class ItemList(ResponseModel, Generic[T]):
    """Every list the API returns: ``{"items": [...], "next_cursor": null}``."""

    items: list[T]
    next_cursor: str | None = None


KeypairRoleName = Literal["user", "admin", "agent", "gateway"]
"""``agent``: may only send heartbeats; ``gateway``: may only read the model registry."""


class KeypairCreateRequest(StrictModel):
    user_name: str = Field(min_length=1, max_length=128)
    role: KeypairRoleName = "user"
    rate_limit: int | None = Field(default=None, ge=1, le=2**31 - 1)


class KeypairInfo(ResponseModel):
    access_key: str
    user_name: str
    role: KeypairRoleName
    is_admin: bool
    is_active: bool
    rate_limit: int | None = None
    created_at: datetime


class KeypairCreated(KeypairInfo):
    """The one response that carries the secret key: it is never shown again."""

    secret_key: str


class ScaleRequest(StrictModel):
    """``{"replicas": N}`` pins the count (autoscaling off); ``{"replicas": "auto"}`` hands the
    actor back to the autoscaler."""

    replicas: int | Literal["auto"]

    @field_validator("replicas", mode="before")
    @classmethod
    def _count_or_auto(cls, value: Any) -> Any:
        if value == "auto" or (
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_REPLICAS
        ):
            return value
        raise ValueError(f'expected a whole number from 0 to {MAX_REPLICAS}, or "auto"')

    def pinned(self) -> int | None:
        return None if self.replicas == "auto" else int(self.replicas)


class SchedulerEventInfo(ResponseModel):
    id: int
    actor_name: str
    kind: str
    message: str
    agent_id: str | None = None
    replica_id: str | None = None
    at: datetime


class ReplicaInfo(ResponseModel):
    id: str
    actor_name: str
    agent_id: str | None
    status: ReplicaStatus
    status_info: str | None = None
    slots: ResourceSlot
    device_ids: list[str]
    generation: int
    restarts: int = 0
    created_at: datetime
    updated_at: datetime


class ActorSummary(ResponseModel):
    name: str
    status: ActorStatus
    generation: int
    is_system: bool
    desired_replicas: int
    pinned_replicas: int | None = None
    running_replicas: int
    created_at: datetime
    updated_at: datetime


class ActorInfo(ActorSummary):
    spec: dict[str, Any]
    replicas: list[ReplicaInfo]
    queue_depth: int | None = None
    events: list[SchedulerEventInfo]


class ApplyResult(ResponseModel):
    name: str
    generation: int
    created: bool
    changed: bool


class AgentInfo(ResponseModel):
    id: str
    addr: str
    status: AgentStatus
    slots_total: ResourceSlot
    slots_used: ResourceSlot
    devices: list[DeviceInfo]
    labels: dict[str, str]
    version: str
    first_contact: datetime
    last_heartbeat: datetime
    replicas: list[ReplicaInfo] = Field(default_factory=list)


class ModelInfo(ResponseModel):
    name: str
    version: str
    actor_name: str
    metadata: dict[str, Any]


def spec_json(spec: ActorSpec) -> dict[str, Any]:
    """The stored form of a spec (what ``GET /v1/actors/{name}`` returns as ``spec``)."""
    return spec.model_dump(mode="json")
