"""The manager's configuration (``manager.toml``; ``BACKEND_<SECTION>__<KEY>``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from ai.backend.common.config.loader import LoadedConfig, load_config
from ai.backend.common.config.sections import (
    BindConfig,
    ConfigSection,
    DatabaseConfig,
    LoggingConfig,
    RedisConfig,
    ServiceConfig,
)
from ai.backend.common.types.units import Duration

SERVICE_NAME = "manager"


class SchedulerConfig(ConfigSection):
    agent_timeout: Duration = Field(
        default=timedelta(seconds=30), description="heartbeat silence after which an agent is lost"
    )
    interval: Duration = Field(default=timedelta(seconds=1), description="scheduling pass period")
    start_failure_backoff: Duration = Field(
        default=timedelta(seconds=60),
        description="how long an agent that failed to start a replica is passed over for its actor",
    )
    unschedulable_event_interval: Duration = Field(
        default=timedelta(seconds=30),
        description="quiet time before the same 'cannot place' event of an actor is written again",
    )
    max_replicas_per_pass: int = Field(
        default=2000, ge=1, description="pending replicas one scheduling transaction considers"
    )


class HistoryConfig(ConfigSection):
    """How long what ended stays readable (``GET /v1/actors/{name}``) before it is deleted."""

    replicas: Duration = Field(
        default=timedelta(hours=1), description="replicas that ended (terminated, failed, lost)"
    )
    events: Duration = Field(default=timedelta(days=1), description="scheduler events")


class LogsConfig(ConfigSection):
    """``GET /v1/actors/{name}/logs``."""

    max_followed_streams_per_key: int = Field(
        default=16,
        ge=1,
        description="log streams one access key may follow at once (each holds a connection"
        " to every followed replica's agent); one more is refused with 429",
    )


class ManagerConfig(ServiceConfig):
    db: DatabaseConfig = Field(default_factory=DatabaseConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    api: BindConfig = Field(default_factory=lambda: BindConfig(port=8081))
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


def load_manager_config(config_path: Path | None = None) -> LoadedConfig[ManagerConfig]:
    return load_config(ManagerConfig, service=SERVICE_NAME, config_path=config_path)
