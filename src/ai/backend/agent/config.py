"""The agent's configuration (``agent.toml``; ``BACKEND_<SECTION>__<KEY>``).

GPUs are detected with NVML / ``nvidia-smi``; on machines without GPUs, ``[[resources.mock_gpus]]``
entries describe devices so that scheduling can be exercised end to end.
"""

from __future__ import annotations

import socket
from enum import StrEnum
from pathlib import Path

from pydantic import Field

from ai.backend.common.config.loader import LoadedConfig, load_config
from ai.backend.common.config.sections import (
    BindConfig,
    ConfigSection,
    LoggingConfig,
    ManagerClientConfig,
    RedisConfig,
    ServiceConfig,
)
from ai.backend.common.types.units import BinarySize

SERVICE_NAME = "agent"


class GpuBackend(StrEnum):
    AUTO = "auto"  # NVML, then nvidia-smi, then none
    NVML = "nvml"
    NVIDIA_SMI = "nvidia-smi"
    MOCK = "mock"
    NONE = "none"


class MockGpu(ConfigSection):
    id: str = Field(min_length=1)
    model: str = "Mock GPU"
    memory: BinarySize = 16 * 1024**3
    uuid: str | None = None


class AgentIdentityConfig(ConfigSection):
    id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=64)
    labels: dict[str, str] = Field(default_factory=dict)


class ResourcesConfig(ConfigSection):
    cpu: float | None = Field(default=None, gt=0, description="cores to offer; default: all")
    mem: BinarySize | None = Field(default=None, description="memory to offer; default: all")
    gpu_backend: GpuBackend = GpuBackend.AUTO
    mock_gpus: list[MockGpu] = Field(default_factory=list)


class AgentConfig(ServiceConfig):
    agent: AgentIdentityConfig = Field(default_factory=AgentIdentityConfig)
    api: BindConfig = Field(default_factory=lambda: BindConfig(port=6001))
    manager: ManagerClientConfig = Field(default_factory=ManagerClientConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


def load_agent_config(config_path: Path | None = None) -> LoadedConfig[AgentConfig]:
    return load_config(AgentConfig, service=SERVICE_NAME, config_path=config_path)
