"""The sidecar's configuration (``sidecar.toml``; ``BACKEND_<SECTION>__<KEY>``).

The ``[actor]`` table holds the actor's spec (the same keys as ``actor apply``); the agent
writes this file for each replica it starts.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from ai.backend.common.config.loader import LoadedConfig, load_config
from ai.backend.common.config.sections import (
    ConfigSection,
    LoggingConfig,
    RedisConfig,
    ServiceConfig,
)
from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.framing import DEFAULT_MAX_FRAME
from ai.backend.common.types.units import BinarySize, Duration

SERVICE_NAME = "sidecar"


class SidecarSection(ConfigSection):
    socket: Path | None = Field(default=None, description="the runtime's Unix socket")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Prometheus /metrics port; none: off"
    )
    claim_idle: Duration = Field(
        default=timedelta(seconds=30), description="reclaim entries pending this long"
    )
    max_frame: BinarySize = DEFAULT_MAX_FRAME
    shutdown_grace: Duration = Field(
        default=timedelta(seconds=30),
        description="on SIGTERM, how long in-flight envelopes may take to finish",
    )


class SidecarConfig(ServiceConfig):
    sidecar: SidecarSection = Field(default_factory=SidecarSection)
    actor: ActorSpec | None = None
    redis: RedisConfig = Field(default_factory=RedisConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


def load_sidecar_config(config_path: Path | None = None) -> LoadedConfig[SidecarConfig]:
    return load_config(SidecarConfig, service=SERVICE_NAME, config_path=config_path)
