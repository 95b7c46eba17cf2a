"""The agent's configuration (``agent.toml``; ``BACKEND_<SECTION>__<KEY>``).

GPUs are detected with NVML / ``nvidia-smi``; on machines without GPUs, ``[[resources.mock_gpus]]``
entries describe devices so that scheduling can be exercised end to end.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ai.backend.common.config.loader import LoadedConfig, load_config
from ai.backend.common.config.sections import (
    BindConfig,
    ConfigSection,
    LoggingConfig,
    ManagerClientConfig,
    RedisConfig,
    ServiceConfig,
)
from ai.backend.common.types.units import BinarySize, Duration

SERVICE_NAME = "agent"


class GpuBackend(StrEnum):
    AUTO = "auto"  # NVML, then nvidia-smi, then none
    NVML = "nvml"
    NVIDIA_SMI = "nvidia-smi"
    MOCK = "mock"
    NONE = "none"


class MockGpu(ConfigSection):
    id: str = Field(min_length=1, description="device id; default: the entry's index")
    model: str = "Mock GPU"
    memory: BinarySize = 16 * 1024**3
    uuid: str | None = None


class AgentIdentityConfig(ConfigSection):
    """The ``[agent]`` table: who this agent is and how it runs its replicas."""

    id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=64)
    labels: dict[str, str] = Field(default_factory=dict)
    heartbeat_interval: Duration = Field(
        default=timedelta(seconds=3), description="period of the heartbeat to the manager"
    )
    state_dir: Path | None = Field(
        default=None,
        description="replica files (spec, logs, state); default ~/.local/state/backend.ai/agent-ID",
    )
    claim_idle: Duration = Field(
        default=timedelta(seconds=30),
        description="the sidecars' claim_idle: entries pending this long are reclaimed",
    )
    restart_backoff: Duration = Field(
        default=timedelta(seconds=1), description="first wait before restarting a crashed process"
    )
    restart_backoff_max: Duration = Field(
        default=timedelta(seconds=30), description="the wait doubles per crash up to this"
    )
    stable_period: Duration = Field(
        default=timedelta(seconds=60),
        description="a process up this long is stable: its crash count and backoff reset",
    )
    crash_limit: int = Field(
        default=5, ge=1, description="crashes without a stable period before a replica fails"
    )
    stuck_grace: Duration = Field(
        default=timedelta(seconds=5),
        description="a runtime whose sync handler still runs this long after its call timed"
        " out exits and is restarted (the thread would hold its slot forever)",
    )
    kill_grace: Duration = Field(
        default=timedelta(seconds=10),
        description="a drained replica is killed after its actor's timeout plus this",
    )

    @field_validator("heartbeat_interval", "restart_backoff", "restart_backoff_max", "stuck_grace")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @property
    def resolved_state_dir(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir.expanduser()
        return Path.home() / ".local" / "state" / "backend.ai" / f"agent-{self.id}"


class ResourcesConfig(ConfigSection):
    cpu: float | None = Field(default=None, gt=0, description="cores to offer; default: all")
    mem: BinarySize | None = Field(default=None, description="memory to offer; default: all")
    gpu_backend: GpuBackend = GpuBackend.AUTO
    mock_gpus: list[MockGpu] = Field(default_factory=list)

    @field_validator("mock_gpus", mode="before")
    @classmethod
    def _ids_default_to_index(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [
                {"id": str(index), **entry} if isinstance(entry, dict) else entry
                for index, entry in enumerate(value)
            ]
        return value

    @model_validator(mode="after")
    def _unique_mock_ids(self) -> ResourcesConfig:
        ids = [gpu.id for gpu in self.mock_gpus]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"mock_gpus: duplicate device ids {', '.join(duplicates)}")
        return self


class AgentConfig(ServiceConfig):
    agent: AgentIdentityConfig = Field(default_factory=AgentIdentityConfig)
    api: BindConfig = Field(default_factory=lambda: BindConfig(port=6001))
    manager: ManagerClientConfig = Field(default_factory=ManagerClientConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


def load_agent_config(config_path: Path | None = None) -> LoadedConfig[AgentConfig]:
    return load_config(AgentConfig, service=SERVICE_NAME, config_path=config_path)
