"""The configuration of each service of the dev stack, written as a TOML file under
``dev/config/`` and passed with ``--config``.

The environment wins over a service's file (DESIGN.md §2), so a child gets this process's
environment without the ``BACKEND_<SECTION>__<KEY>`` variables of the keys its file sets: what
the stack decides (ports, URLs, keypairs) cannot be redirected by a variable exported for
something else, while other settings (``BACKEND_LOGGING__LEVEL=DEBUG``) still pass through.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .paths import write_private_file
from .record import KeypairRecord

HOST: Final = "127.0.0.1"
MOCK_GPU_MODEL: Final = "Mock GPU"
MOCK_GPU_MEMORY: Final = "16g"
AGENT_HEARTBEAT: Final = "1s"  # quicker than the default 3 s: a dev applies and looks at once
GATEWAY_ID: Final = "dev-gateway"

TomlTable = Mapping[str, Any]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string
    if isinstance(value, list) and all(not isinstance(v, Mapping) for v in value):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")


def toml_text(document: Mapping[str, TomlTable | list[TomlTable]]) -> str:
    """A TOML document of tables (``[section]``) and arrays of tables (``[[section]]``) whose
    values are scalars or lists of scalars; a nested table is written as ``[a.b]``."""
    lines: list[str] = []

    def table(name: str, values: TomlTable, header: str) -> None:
        lines.append(header.format(name))
        nested = []
        for key, value in values.items():
            if isinstance(value, Mapping):
                nested.append((key, value))
            elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
                nested.extend((key, item) for item in value)
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        for key, value in nested:
            is_array = isinstance(values[key], list)
            table(f"{name}.{key}", value, "[[{}]]" if is_array else "[{}]")

    for name, values in document.items():
        if isinstance(values, list):
            for item in values:
                table(name, item, "[[{}]]")
        else:
            table(name, values, "[{}]")
    return "\n".join(lines)


def environment_keys(document: Mapping[str, Any], prefix: str = "BACKEND_") -> Iterator[str]:
    """The ``BACKEND_<SECTION>__<KEY>`` variables that would override the document's values."""
    for key, value in document.items():
        name = f"{prefix}{key.upper()}"
        if isinstance(value, Mapping):
            yield from environment_keys(value, f"{name}__")
        else:
            yield name


@dataclass(frozen=True)
class StackEndpoints:
    """What every service needs to know of the others."""

    db_url: str
    redis_url: str
    redis_prefix: str
    manager_port: int

    @property
    def manager_url(self) -> str:
        return f"http://{HOST}:{self.manager_port}"

    def redis_table(self) -> dict[str, Any]:
        return {"url": self.redis_url, "prefix": self.redis_prefix}

    def manager_client_table(self, keys: KeypairRecord) -> dict[str, Any]:
        return {
            "api": self.manager_url,
            "access_key": keys.access_key,
            "secret_key": keys.secret_key,
        }


def manager_config(stack: StackEndpoints) -> dict[str, Any]:
    return {
        "db": {"url": stack.db_url},
        "redis": stack.redis_table(),
        "api": {"host": HOST, "port": stack.manager_port},
    }


def gateway_config(
    stack: StackEndpoints, *, port: int, grpc_port: int, tools_dir: Path, keys: KeypairRecord
) -> dict[str, Any]:
    return {
        "db": {"url": stack.db_url},
        "redis": stack.redis_table(),
        "api": {"host": HOST, "port": port},
        "grpc": {"enabled": True, "host": HOST, "port": grpc_port},
        "jobs": {"gateway_id": GATEWAY_ID},
        "tools": {"path": tools_dir},
        "manager": stack.manager_client_table(keys),  # a `gateway` keypair: model registry reads
    }


def agent_config(
    stack: StackEndpoints,
    *,
    agent_id: str,
    port: int,
    state_dir: Path,
    mock_gpus: int,
    keys: KeypairRecord,
) -> dict[str, Any]:
    resources: dict[str, Any] = {"gpu_backend": "mock" if mock_gpus else "auto"}
    if mock_gpus:
        resources["mock_gpus"] = [
            {"id": str(index), "model": MOCK_GPU_MODEL, "memory": MOCK_GPU_MEMORY}
            for index in range(mock_gpus)
        ]
    return {
        "agent": {"id": agent_id, "state_dir": state_dir, "heartbeat_interval": AGENT_HEARTBEAT},
        "api": {"host": HOST, "port": port},
        "manager": stack.manager_client_table(keys),
        "redis": stack.redis_table(),
        "resources": resources,
    }


def write_config(path: Path, document: Mapping[str, Any]) -> None:
    """Write the service's TOML file, readable only by its owner (it holds a secret key)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_file(path, toml_text(document))
