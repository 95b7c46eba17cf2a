"""Load a service's configuration: environment > TOML file > defaults, remembering where every
value came from.

* File lookup: ``--config PATH``, else ``./<service>.toml``, else
  ``~/.config/backend.ai/<service>.toml``, else ``/etc/backend.ai/<service>.toml``.
* Environment keys: ``BACKEND_<SECTION>__<KEY>`` (``BACKEND_DB__URL``); deeper tables add more
  ``__`` parts. Variables naming a section this service does not have are left alone (they
  belong to another service); a variable naming an unknown key of a known section is reported in
  :attr:`LoadedConfig.unknown_env`. Values of list, table and object keys are read as JSON.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError

from ..dto.base import describe_validation_error
from ..errors import ConfigurationError

ENV_PREFIX = "BACKEND_"
ENV_SEPARATOR = "__"

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class SecretKind(StrEnum):
    """How a value is masked when shown: a ``SecretStr`` or a field with
    ``json_schema_extra={"secret": True}`` entirely, one with ``{"secret_url": True}`` only in
    the password part of its URL."""

    NONE = "none"
    FULL = "full"
    URL_PASSWORD = "url_password"


class ConfigSource(StrEnum):
    DEFAULT = "default"
    FILE = "file"
    ENV = "env"


@dataclass(frozen=True)
class ConfigEntry:
    """One leaf of the effective configuration, ready to show (``value`` already masked)."""

    key: str
    value: Any
    source: ConfigSource
    origin: str  # the env var or the file that set it; "" for defaults
    secret: SecretKind


@dataclass(frozen=True)
class LoadedConfig(Generic[ConfigT]):
    config: ConfigT
    service: str
    file: Path | None
    sources: Mapping[str, ConfigSource]
    origins: Mapping[str, str]
    unknown_env: tuple[str, ...] = field(default=())

    def source_of(self, key: str) -> ConfigSource:
        return self.sources.get(key, ConfigSource.DEFAULT)

    def entries(self) -> list[ConfigEntry]:
        """Every leaf of the config in declaration order, secrets masked."""
        return [
            ConfigEntry(
                key=key,
                value=mask_value(value, secret),
                source=self.source_of(key),
                origin=self.origins.get(key, ""),
                secret=secret,
            )
            for key, value, secret in _walk_leaves(
                type(self.config), self.config.model_dump(mode="json"), ""
            )
        ]


def candidate_config_files(service: str) -> list[Path]:
    return [
        Path.cwd() / f"{service}.toml",
        Path.home() / ".config" / "backend.ai" / f"{service}.toml",
        Path("/etc/backend.ai") / f"{service}.toml",
    ]


def find_config_file(service: str, explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigurationError(f"config file {explicit} does not exist")
        return explicit
    return next((p for p in candidate_config_files(service) if p.is_file()), None)


def load_config(
    model: type[ConfigT],
    *,
    service: str,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig[ConfigT]:
    """Build ``model`` from defaults, the TOML file and the environment.

    Raises :class:`ConfigurationError` naming the key and where its bad value came from.
    """
    file = find_config_file(service, config_path)
    file_data: dict[str, Any] = {}
    if file is not None:
        try:
            file_data = tomllib.loads(file.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigurationError(f"{file}: invalid TOML: {e}") from None
    env_data, env_origins, unknown_env = _read_environment(
        model, os.environ if environ is None else environ
    )

    sources: dict[str, ConfigSource] = {}
    origins: dict[str, str] = {}
    for key in _leaf_keys(file_data, model):
        sources[key] = ConfigSource.FILE
        origins[key] = str(file)
    for key, var in env_origins.items():
        sources[key] = ConfigSource.ENV
        origins[key] = var

    merged = _deep_merge(file_data, env_data)
    try:
        config = model.model_validate(merged)
    except ValidationError as e:
        problems = []
        for problem in describe_validation_error(e):
            where = origins.get(problem["field"])
            suffix = f" (from {where})" if where else ""
            problems.append(f"{problem['field']}{suffix}: {problem['message']}")
        raise ConfigurationError(
            f"invalid {service} configuration: " + "; ".join(problems)
        ) from None
    return LoadedConfig(
        config=config,
        service=service,
        file=file,
        sources=sources,
        origins=origins,
        unknown_env=tuple(sorted(unknown_env)),
    )


def mask_value(value: Any, secret: SecretKind) -> Any:
    """Secrets show as ``********``; URLs marked ``secret_url`` keep all but their password."""
    if secret is SecretKind.NONE or value in (None, ""):
        return value
    if secret is SecretKind.URL_PASSWORD and isinstance(value, str):
        return mask_url_password(value)
    return "********"


def mask_url_password(url: str) -> str:
    """``redis://:pw@host`` → ``redis://:***@host``; URLs without a password are unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


def _model_type(annotation: Any) -> type[BaseModel] | None:
    """The model class of a ``Model`` or ``Model | None`` field, else ``None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _wants_json(annotation: Any) -> bool:
    """Whether an env value for this field must be decoded as JSON (lists, tables, models)."""
    origin = get_origin(annotation)
    if origin in (list, dict, tuple, set, frozenset) or annotation in (list, dict):
        return True
    if isinstance(annotation, type) and issubclass(annotation, Mapping):
        return True  # e.g. ResourceSlot
    if _model_type(annotation) is not None:
        return True
    return any(_wants_json(arg) for arg in get_args(annotation) if arg is not type(None))


def _read_environment(
    model: type[BaseModel], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    unknown: list[str] = []
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        parts = var[len(ENV_PREFIX) :].lower().split(ENV_SEPARATOR)
        if len(parts) < 2 or parts[0] not in model.model_fields:
            continue  # not ours: another service's section, or not a config variable
        current: type[BaseModel] = model
        target = data
        for depth, part in enumerate(parts):
            info = current.model_fields.get(part)
            if info is None:
                unknown.append(var)
                break
            if depth == len(parts) - 1:
                value: Any = raw
                if _wants_json(info.annotation):
                    try:
                        value = json.loads(raw)
                    except json.JSONDecodeError:
                        raise ConfigurationError(
                            f"{var}: expected a JSON value for {'.'.join(parts)}"
                        ) from None
                target[part] = value
                origins[".".join(parts)] = var
            elif (section := _model_type(info.annotation)) is not None:
                current = section
                target = target.setdefault(part, {})
            else:
                unknown.append(var)
                break
    return data, origins, unknown


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaf_keys(data: dict[str, Any], model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted keys of ``data`` down to the model's leaves (a table-valued field is one leaf)."""
    keys = []
    for name, value in data.items():
        info = model.model_fields.get(name)
        key = f"{prefix}{name}"
        section = _model_type(info.annotation) if info is not None else None
        if section is not None and isinstance(value, dict):
            keys += _leaf_keys(value, section, f"{key}.")
        else:
            keys.append(key)
    return keys


def _walk_leaves(
    model: type[BaseModel], dumped: Mapping[str, Any], prefix: str
) -> list[tuple[str, Any, SecretKind]]:
    """``(key, JSON value, secret kind)`` for every leaf, walking the model's nested sections."""
    leaves = []
    for name, info in model.model_fields.items():
        value = dumped.get(name)
        key = f"{prefix}{name}"
        section = _model_type(info.annotation)
        if section is not None and isinstance(value, Mapping):
            leaves += _walk_leaves(section, value, f"{key}.")
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("secret") or _is_secret(info.annotation):
            secret = SecretKind.FULL
        elif extra.get("secret_url"):
            secret = SecretKind.URL_PASSWORD
        else:
            secret = SecretKind.NONE
        leaves.append((key, value, secret))
    return leaves


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in get_args(annotation))
