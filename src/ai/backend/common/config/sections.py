"""Config sections that more than one service uses."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..transport.redis_keys import JOB_END_TTL_SECONDS
from ..types.units import Duration


class ConfigSection(BaseModel):
    """A ``[section]`` of a service's TOML file: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class ServiceConfig(BaseModel):
    """The root of a service's configuration: one attribute per ``[section]``."""

    model_config = ConfigDict(extra="forbid")


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LoggingConfig(ConfigSection):
    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.TEXT


class DatabaseConfig(ConfigSection):
    url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/backend",
        description="SQLAlchemy URL of the database of record (created by `mgr schema oneshot`)",
        json_schema_extra={"secret_url": True},
    )
    pool_size: int = Field(default=8, ge=1)
    max_overflow: int = Field(default=8, ge=0)
    pool_pre_ping: bool = Field(
        default=True,
        description="test each pooled connection with a round trip before lending it out (a"
        " connection broken by a database restart is then replaced before use, not after its"
        " first failure)",
    )
    server_settings: dict[str, str] = Field(
        default_factory=dict,
        description="PostgreSQL settings for this service's sessions (e.g. plan_cache_mode)",
    )
    echo: bool = False


class RedisConfig(ConfigSection):
    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis URL for actor streams, job events and retries",
        json_schema_extra={"secret_url": True},
    )
    prefix: str = Field(default="bai:", min_length=1, description="prefix of every Redis key")
    job_end_ttl: Duration = Field(
        default=timedelta(seconds=JOB_END_TTL_SECONDS),
        description="how long a job's end (and a cancel) is remembered against duplicates",
    )

    @field_validator("job_end_ttl")
    @classmethod
    def _at_least_a_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("job_end_ttl must be at least 1s")
        return value


class BindConfig(ConfigSection):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


class ManagerClientConfig(ConfigSection):
    """Where another service finds the manager's REST API."""

    api: str = Field(default="http://127.0.0.1:8081", description="base URL of the manager API")
    access_key: str | None = Field(
        default=None, description="access key of the keypair this service signs requests with"
    )
    secret_key: str | None = Field(
        default=None,
        description="secret key of that keypair",
        json_schema_extra={"secret": True},
    )
