"""What ``dev up`` is asked for: options, else ``BACKEND_DEV_*`` / the services' own variables,
else the defaults of DESIGN.md §2."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from ai.backend.common.config.sections import DatabaseConfig, RedisConfig

from .errors import DevStackError

DEFAULT_MANAGER_PORT: Final = 8081
DEFAULT_GATEWAY_PORT: Final = 8090
DEFAULT_GRPC_PORT: Final = 8091
DEFAULT_AGENT_PORT: Final = 6001
DEFAULT_TIMEOUT: Final = 60.0
DB_URL_VARIABLE: Final = "BACKEND_DB__URL"
REDIS_URL_VARIABLE: Final = "BACKEND_REDIS__URL"
REDIS_PREFIX_VARIABLE: Final = "BACKEND_REDIS__PREFIX"


class UrlSource(StrEnum):
    OPTION = "option"
    ENVIRONMENT = "env"
    DEFAULT = "default"


@dataclass(frozen=True)
class UrlChoice:
    url: str
    source: UrlSource

    @classmethod
    def resolve(cls, option: str | None, variable: str, default: str) -> UrlChoice:
        if option:
            return cls(option, UrlSource.OPTION)
        if os.environ.get(variable):
            return cls(os.environ[variable], UrlSource.ENVIRONMENT)
        return cls(default, UrlSource.DEFAULT)

    @property
    def explicit(self) -> bool:
        return self.source is not UrlSource.DEFAULT


def default_db_url() -> str:
    return str(DatabaseConfig.model_fields["url"].default)


def default_redis_url() -> str:
    return str(RedisConfig.model_fields["url"].default)


def default_redis_prefix() -> str:
    return os.environ.get(REDIS_PREFIX_VARIABLE) or str(RedisConfig.model_fields["prefix"].default)


@dataclass(frozen=True)
class UpSettings:
    agents: int
    mock_gpus: int
    manager_port: int
    gateway_port: int
    grpc_port: int
    agent_port: int
    db: UrlChoice
    redis: UrlChoice
    redis_prefix: str
    timeout: float
    examples: Path | None  # None: no example actors and tools

    def agent_name(self, index: int) -> str:
        return f"agent-{index}"

    def agent_names(self) -> list[str]:
        return [self.agent_name(i) for i in range(1, self.agents + 1)]

    def ports(self) -> dict[str, int]:
        """Every port the stack listens on, by the service that uses it."""
        ports = {
            "manager": self.manager_port,
            "gateway": self.gateway_port,
            "gateway (gRPC)": self.grpc_port,
        }
        for index, name in enumerate(self.agent_names()):
            ports[name] = self.agent_port + index
        clashes = sorted({p for p in ports.values() if list(ports.values()).count(p) > 1})
        if clashes:
            raise DevStackError(
                f"port {', '.join(map(str, clashes))} is given to more than one service: "
                + ", ".join(f"{name} {port}" for name, port in ports.items() if port in clashes)
            )
        return ports


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on ``host:port`` (binding as the services do, with
    SO_REUSEADDR, so a closing connection of an earlier run does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_ports_free(wanted: dict[str, int]) -> None:
    """:class:`DevStackError` naming every port in use and its service, before anything starts."""
    busy = [(name, port) for name, port in wanted.items() if port_in_use(port)]
    if busy:
        listed = "; ".join(f"port {port} ({name}) is in use" for name, port in busy)
        raise DevStackError(
            f"{listed}. Stop what listens there, or choose other ports"
            " (--manager-port, --gateway-port, --grpc-port, --agent-port or BACKEND_DEV_*)."
        )
