"""ToolSpec (DESIGN.md §4.6): how the gateway exposes a route of actors as an MCP / REST tool."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import jsonschema
import yaml
from pydantic import Field, field_validator, model_validator

from ..types.units import Duration
from .base import StrictModel, UserActorName
from .gateway_api import MAX_JOB_TIMEOUT

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class ToolSpec(StrictModel):
    name: str
    description: str = Field(min_length=1)
    parameters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    route: list[UserActorName] = Field(min_length=1)
    progress: bool = False
    timeout: Duration = timedelta(seconds=300)
    wait: Duration | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _TOOL_NAME.match(value):
            raise ValueError(
                f"invalid tool name {value!r}: use letters, digits, '_', '-' and '.', at most 128"
            )
        return value

    @model_validator(mode="after")
    def _timeouts_in_range(self) -> ToolSpec:
        if not timedelta(0) < self.timeout <= MAX_JOB_TIMEOUT:
            raise ValueError("timeout: must be above 0 and at most 23 hours")
        if self.wait is not None and not timedelta(0) <= self.wait <= self.timeout:
            raise ValueError("wait: must be between 0 and the tool's timeout")
        return self

    @model_validator(mode="after")
    def _schema_is_valid(self) -> ToolSpec:
        unknown = [name for name in self.required if name not in self.parameters]
        if unknown:
            raise ValueError(f"required names undefined parameters: {', '.join(unknown)}")
        try:
            jsonschema.Draft202012Validator.check_schema(self.input_schema())
        except jsonschema.SchemaError as e:
            where = ".".join(str(p) for p in e.path) or "parameters"
            raise ValueError(f"{where}: not a valid JSON Schema: {e.message}") from None
        return self

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments (MCP ``inputSchema``)."""
        return {
            "type": "object",
            "properties": self.parameters,
            "required": self.required,
            "additionalProperties": False,
        }


class ToolCatalog(StrictModel):
    """The gateway's tool file: ``tools: [...]`` with unique names."""

    tools: list[ToolSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ToolCatalog:
        seen: set[str] = set()
        for tool in self.tools:
            if tool.name in seen:
                raise ValueError(f"duplicate tool name {tool.name!r}")
            seen.add(tool.name)
        return self

    @classmethod
    def from_yaml(cls, text: str) -> ToolCatalog:
        try:
            data: Any = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"invalid YAML: {e}") from None
        return cls.model_validate(data if data is not None else {})
