"""The gateway's configuration (``gateway.toml``; ``BACKEND_<SECTION>__<KEY>``)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr

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

SERVICE_NAME = "gateway"


class AuthMode(StrEnum):
    NONE = "none"  # local development only
    TOKEN = "token"
    HMAC = "hmac"


class GatewayAuthConfig(ConfigSection):
    mode: AuthMode = AuthMode.TOKEN
    manager_token: SecretStr = Field(
        default=SecretStr(""), description="token the gateway uses to ask the manager about keys"
    )


class GatewayToolsConfig(ConfigSection):
    path: Path | None = Field(default=None, description="a tool YAML file or a directory of them")


class GrpcConfig(ConfigSection):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8091, ge=0, le=65535)


class GatewayConfig(ServiceConfig):
    db: DatabaseConfig = Field(default_factory=DatabaseConfig)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    api: BindConfig = Field(default_factory=lambda: BindConfig(port=8090))
    grpc: GrpcConfig = Field(default_factory=GrpcConfig)
    manager: ManagerClientConfig = Field(default_factory=ManagerClientConfig)
    auth: GatewayAuthConfig = Field(default_factory=GatewayAuthConfig)
    tools: GatewayToolsConfig = Field(default_factory=GatewayToolsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


def load_gateway_config(config_path: Path | None = None) -> LoadedConfig[GatewayConfig]:
    return load_config(GatewayConfig, service=SERVICE_NAME, config_path=config_path)
