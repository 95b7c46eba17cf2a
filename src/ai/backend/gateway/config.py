"""The gateway's configuration (``gateway.toml``; ``BACKEND_<SECTION>__<KEY>``)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import Field

from ai.backend.common.config.loader import LoadedConfig, load_config
from ai.backend.common.config.sections import (
    BindConfig,
    ConfigSection,
    DatabaseConfig,
    LoggingConfig,
    ManagerClientConfig,
    RedisConfig,
    ServiceConfig,
)
from ai.backend.common.types.units import Duration

SERVICE_NAME = "gateway"


class AuthMode(StrEnum):
    NONE = "none"  # local development only
    TOKEN = "token"
    HMAC = "hmac"


class GatewayAuthConfig(ConfigSection):
    mode: AuthMode = Field(
        default=AuthMode.TOKEN,
        description="token: Bearer API tokens or HMAC signatures; hmac: HMAC only;"
        " none: no authentication (local development only, never exposed)",
    )
    cache_ttl: Duration = Field(
        default=timedelta(seconds=5),
        description="how long a verified credential is trusted before it is read again",
    )


class GatewayToolsConfig(ConfigSection):
    path: Path | None = Field(default=None, description="a tool YAML file or a directory of them")


DEFAULT_ALLOWED_ORIGINS = [
    "http://localhost",
    "http://127.0.0.1",
    "https://localhost",
    "https://127.0.0.1",
    "http://[::1]",
]


class GatewayApiConfig(BindConfig):
    port: int = Field(default=8090, ge=0, le=65535)
    allowed_origins: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_ORIGINS),
        description="browser origins MCP accepts (any port of these hosts); requests without"
        " an Origin header are accepted",
    )
    max_body: int = Field(default=64 * 1024 * 1024, ge=1024, description="largest request body")


class GatewayJobsConfig(ConfigSection):
    gateway_id: str | None = Field(
        default=None,
        description="this replica's name (its consumer in the events group, and the prefix of"
        " its reply stream); default: the host name and the API port, so a restarted gateway"
        " is the same consumer",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
    )
    publish_retry_after: Duration = Field(
        default=timedelta(seconds=5),
        description="a job whose first envelope was not confirmed published this long after"
        " its creation is published again (or failed once past its deadline)",
    )
    sweep_interval: Duration = Field(
        default=timedelta(seconds=1), description="how often deadlines and publishes are checked"
    )
    events_batch: int = Field(default=512, ge=1, le=2000)
    trim_interval: Duration = Field(
        default=timedelta(seconds=10),
        description="how often the events stream is trimmed below what the gateways acknowledged",
    )
    max_partials: int = Field(
        default=10000, ge=1, description="partials kept per job; later ones are coalesced"
    )
    heartbeat: Duration = Field(
        default=timedelta(seconds=15), description="SSE comment sent when no event came"
    )


# PostgreSQL settings for the gateway's sessions (see GatewayDatabaseConfig.server_settings)
INDEX_PLANS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}


class GatewayDatabaseConfig(DatabaseConfig):
    pool_pre_ping: bool = Field(
        default=False,
        description="off by default here (a round trip more for each statement on the job"
        " paths): a connection a database restart broke fails the one statement that meets it"
        " (the event ingestor and the sweeper retry; the requests of a batch of job creations"
        " get a 500) and is replaced",
    )
    server_settings: dict[str, str] = Field(
        default_factory=lambda: dict(INDEX_PLANS),
        description="by default, plans made once per statement and connection, through the"
        " indexes: every statement of the job paths is an index lookup, and a plan cached while"
        " the tables were small (a new database) would otherwise scan them whole as they grow",
    )


class GrpcConfig(ConfigSection):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8091, ge=0, le=65535)


class GatewayConfig(ServiceConfig):
    db: GatewayDatabaseConfig = Field(default_factory=GatewayDatabaseConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    api: GatewayApiConfig = Field(default_factory=GatewayApiConfig)
    jobs: GatewayJobsConfig = Field(default_factory=GatewayJobsConfig)
    grpc: GrpcConfig = Field(default_factory=GrpcConfig)
    manager: ManagerClientConfig = Field(default_factory=ManagerClientConfig)
    auth: GatewayAuthConfig = Field(default_factory=GatewayAuthConfig)
    tools: GatewayToolsConfig = Field(default_factory=GatewayToolsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


def load_gateway_config(config_path: Path | None = None) -> LoadedConfig[GatewayConfig]:
    return load_config(GatewayConfig, service=SERVICE_NAME, config_path=config_path)
