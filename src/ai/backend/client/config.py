"""Where the SDK finds the platform and with which keypair: environment > ``client.toml`` >
defaults.

``client.toml`` (written by ``./backend.ai dev up``) lives at ``$BACKEND_CLIENT_CONFIG`` when
that is set, else ``$XDG_CONFIG_HOME/backend.ai/client.toml`` (``~/.config`` when
``XDG_CONFIG_HOME`` is unset)::

    [client]
    endpoint = "http://127.0.0.1:8081"          # manager
    gateway_endpoint = "http://127.0.0.1:8090"  # gateway (REST, MCP, KServe)
    access_key = "AKIA…"
    secret_key = "…"

The environment wins over the file: ``BACKEND_ENDPOINT``, ``BACKEND_GATEWAY_ENDPOINT``,
``BACKEND_ACCESS_KEY``, ``BACKEND_SECRET_KEY`` (an empty variable counts as unset). A missing
file is not an error (the defaults apply); a malformed one is.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ai.backend.common.dto.base import describe_validation_error

from .exceptions import ClientConfigError

DEFAULT_ENDPOINT: Final = "http://127.0.0.1:8081"
DEFAULT_GATEWAY_ENDPOINT: Final = "http://127.0.0.1:8090"
CONFIG_PATH_VARIABLE: Final = "BACKEND_CLIENT_CONFIG"
CONFIG_TABLE: Final = "client"
# the field each environment variable sets
ENVIRONMENT_KEYS: Final = {
    "BACKEND_ENDPOINT": "endpoint",
    "BACKEND_GATEWAY_ENDPOINT": "gateway_endpoint",
    "BACKEND_ACCESS_KEY": "access_key",
    "BACKEND_SECRET_KEY": "secret_key",
}


def client_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``client.toml`` is read from (and where ``dev up`` writes it)."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_PATH_VARIABLE):
        return Path(env[CONFIG_PATH_VARIABLE]).expanduser()
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "backend.ai" / "client.toml"


class ClientConfig(BaseModel):
    """The endpoints of the manager and the gateway and the keypair that signs requests to
    both. ``source_file`` is the ``client.toml`` that was read, if any."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    endpoint: str = DEFAULT_ENDPOINT
    gateway_endpoint: str = DEFAULT_GATEWAY_ENDPOINT
    access_key: str | None = None
    secret_key: str | None = Field(default=None, repr=False)
    source_file: Path | None = Field(default=None, exclude=True)

    @field_validator("endpoint", "gateway_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL like {DEFAULT_ENDPOINT}, got {value!r}")
        return value.strip().rstrip("/")

    @classmethod
    def load(
        cls, *, path: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> ClientConfig:
        """The effective configuration: ``environ`` (default ``os.environ``) over the file at
        ``path`` (default :func:`client_config_path`) over the defaults; raises
        :class:`ClientConfigError` naming the bad value and where it came from."""
        env = os.environ if environ is None else environ
        file = path if path is not None else client_config_path(env)
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        if file.is_file():
            for key, value in _read_table(file).items():
                values[key] = value
                origins[key] = str(file)
        for variable, key in ENVIRONMENT_KEYS.items():
            if env.get(variable):
                values[key] = env[variable]
                origins[key] = variable
        try:
            return cls.model_validate({**values, "source_file": file if file.is_file() else None})
        except ValidationError as e:
            problems = []
            for problem in describe_validation_error(e):
                where = origins.get(problem["field"])
                suffix = f" (from {where})" if where else ""
                problems.append(f"{problem['field']}{suffix}: {problem['message']}")
            raise ClientConfigError(
                "invalid client configuration: " + "; ".join(problems)
            ) from None

    @property
    def has_keypair(self) -> bool:
        return bool(self.access_key and self.secret_key)


def _read_table(file: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(file.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ClientConfigError(f"{file}: cannot read the client configuration: {e}") from None
    table = document.get(CONFIG_TABLE, {})
    if not isinstance(table, dict):
        raise ClientConfigError(f"{file}: [{CONFIG_TABLE}] must be a table")
    return table
