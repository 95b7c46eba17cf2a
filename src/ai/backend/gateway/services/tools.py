"""The configured tools (DESIGN.md §4.6): loaded from one YAML file or a directory of them,
reloaded on ``SIGHUP`` (a bad file is reported and the previous tools stay), and the validation
of a call's arguments against a tool's JSON Schema, with defaults applied."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from pydantic import ValidationError

from ai.backend.common.dto.tool_spec import ToolCatalog, ToolSpec
from ai.backend.common.log import BraceStyleAdapter

from ..errors import InvalidArgument, ToolNotFound

log = BraceStyleAdapter(logging.getLogger(__name__))

TOOL_FILE_SUFFIXES = (".yaml", ".yml")


class ToolFileError(Exception):
    """A tool file that cannot be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class LoadedTool:
    spec: ToolSpec
    validator: jsonschema.Draft202012Validator = field(compare=False)


def _tool_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in TOOL_FILE_SUFFIXES and p.is_file())
    if path.is_file():
        return [path]
    raise ToolFileError(f"{path}: no such tool file or directory")


def load_tools(path: Path | None) -> dict[str, LoadedTool]:
    """Every tool under ``path`` (none when ``None``); :class:`ToolFileError` for the first bad
    file or a name defined twice across files."""
    if path is None:
        return {}
    tools: dict[str, LoadedTool] = {}
    for file in _tool_files(path):
        try:
            catalog = ToolCatalog.from_yaml(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, ValidationError) as e:
            raise ToolFileError(f"{file}: {e}") from None
        for spec in catalog.tools:
            if spec.name in tools:
                raise ToolFileError(f"{file}: tool {spec.name!r} is defined twice")
            tools[spec.name] = LoadedTool(
                spec, jsonschema.Draft202012Validator(spec.input_schema())
            )
    return tools


def _json_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


def _apply_defaults(schema: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    filled = copy.deepcopy(arguments)
    for name, prop in schema.get("properties", {}).items():
        if name not in filled and isinstance(prop, dict) and "default" in prop:
            filled[name] = copy.deepcopy(prop["default"])
    return filled


class ToolService:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._tools = load_tools(path)
        self.generation = 1

    @property
    def path(self) -> Path | None:
        return self._path

    def reload(self) -> bool:
        """Load the tools again; on a bad file, log it, keep the previous tools and return
        ``False``."""
        try:
            tools = load_tools(self._path)
        except ToolFileError as e:
            log.error("tools not reloaded, the previous {} stay: {}", len(self._tools), e)
            return False
        self._tools = tools
        self.generation += 1
        log.info("tools reloaded: {}", ", ".join(sorted(tools)) or "(none)")
        return True

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(tool.spec for tool in sorted(self._tools.values(), key=lambda t: t.spec.name))

    def get(self, name: str) -> ToolSpec:
        tool = self._tools.get(name)
        if tool is None:
            raise ToolNotFound(f"unknown tool {name!r}")
        return tool.spec

    def validate_arguments(self, name: str, arguments: Any) -> dict[str, Any]:
        """The call's arguments with defaults applied; :class:`InvalidArgument` naming the
        first field that does not match the schema, :class:`ToolNotFound` for an unknown tool."""
        tool = self._tools.get(name)
        if tool is None:
            raise ToolNotFound(f"unknown tool {name!r}")
        if not isinstance(arguments, dict):
            raise InvalidArgument("arguments: expected an object")
        filled = _apply_defaults(tool.spec.input_schema(), arguments)
        error = jsonschema.exceptions.best_match(tool.validator.iter_errors(filled))
        if error is not None:
            where = _json_path(error)
            field_name = f"arguments.{where}" if where else "arguments"
            raise InvalidArgument(f"{field_name}: {error.message}")
        return filled
