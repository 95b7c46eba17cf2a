"""The manager's tables. Importing this package registers them on the shared metadata."""

from ai.backend.common.db.base import Base

from .actors import ActorRow, ReplicaRow, SchedulerEventRow
from .agents import AgentRow
from .keypairs import ApiTokenRow, KeypairRow
from .model_registry import ModelRow

metadata = Base.metadata

__all__ = [
    "ActorRow",
    "AgentRow",
    "ApiTokenRow",
    "KeypairRow",
    "ModelRow",
    "ReplicaRow",
    "SchedulerEventRow",
    "metadata",
]
