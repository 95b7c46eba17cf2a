"""Parsing what users type: ``--arg key=value``, durations, replica counts and KServe tensors
(``--input name:DATATYPE:shape:data``). Pure functions plus the click types around them, so a
bad value is a usage error (exit 2) that names the option."""

from __future__ import annotations

import json
import math
from typing import Any

import click

KSERVE_DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_or_text(text: str) -> Any:
    """A value as JSON when it is valid JSON (numbers, booleans, null, objects, lists, quoted
    strings), else the text itself: ``10`` → 10, ``true`` → True, ``hello`` → "hello"."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` → ``(key, json_or_text(value))``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), json_or_text(value)


def parse_json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise ValueError(f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object ({{...}}), got {type(value).__name__}")
    return value


def parse_replicas(text: str) -> int | str:
    """``3`` → 3; ``auto`` → "auto" (hand the actor back to the autoscaler)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"expected a number of replicas or 'auto', got {text!r}") from None
    if count < 0:
        raise ValueError(f"the number of replicas must not be negative, got {count}")
    return count


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [item for part in data for item in _flatten(part)]
    return [data]


def _parse_shape(text: str) -> list[int]:
    body = text.strip().removeprefix("[").removesuffix("]").strip()
    if not body:
        return []
    try:
        shape = [int(part) for part in body.split(",")]
    except ValueError:
        raise ValueError(f"shape: expected numbers like 3 or 2,3, got {text!r}") from None
    if any(size < 0 for size in shape):
        raise ValueError(f"shape: sizes must not be negative, got {text!r}")
    return shape


def parse_tensor(text: str) -> dict[str, Any]:
    """``name:DATATYPE:shape:data`` → a KServe v2 input tensor. ``shape`` is ``3`` or ``2,3``
    (or ``[2,3]``); ``data`` is JSON, nested lists flattened in row-major order, and must hold
    as many elements as the shape says: ``INPUT0:FP32:2,2:[[1,2],[3,4]]``."""
    parts = text.split(":", 3)
    if len(parts) != 4:
        raise ValueError(f"expected NAME:DATATYPE:SHAPE:DATA, got {text!r}")
    name, datatype, shape_text, data_text = parts
    if not name:
        raise ValueError(f"the tensor needs a name, got {text!r}")
    datatype = datatype.strip().upper()
    if datatype not in KSERVE_DATATYPES:
        raise ValueError(
            f"datatype: expected one of {', '.join(KSERVE_DATATYPES)}, got {parts[1]!r}"
        )
    shape = _parse_shape(shape_text)
    try:
        data = json.loads(data_text, parse_constant=_reject_constant)
    except ValueError as e:
        raise ValueError(f"data of {name!r}: not valid JSON ({e})") from None
    flat = _flatten(data)
    expected = math.prod(shape)
    if len(flat) != expected:
        raise ValueError(
            f"data of {name!r}: shape {shape} holds {expected} element(s), got {len(flat)}"
        )
    return {"name": name, "datatype": datatype, "shape": shape, "data": flat}


class _ParsingType(click.ParamType):
    """A click type around one of the parsers above (a ``ValueError`` is a usage error)."""

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class AssignmentType(_ParsingType):
    name = "KEY=VALUE"

    def parse(self, text: str) -> Any:
        return parse_assignment(text)


class JsonObjectType(_ParsingType):
    name = "JSON"

    def parse(self, text: str) -> Any:
        return parse_json_object(text)


class ReplicasType(_ParsingType):
    name = "N|auto"

    def parse(self, text: str) -> Any:
        return parse_replicas(text)


class TensorType(_ParsingType):
    name = "NAME:DATATYPE:SHAPE:DATA"

    def parse(self, text: str) -> Any:
        return parse_tensor(text)


class DurationType(_ParsingType):
    """``30s``, ``5m``, ``1h30m`` or seconds; kept as the text the API accepts."""

    name = "DURATION"

    def parse(self, text: str) -> Any:
        from ai.backend.common.types.units import parse_duration

        parse_duration(text)
        return text


ASSIGNMENT = AssignmentType()
JSON_OBJECT = JsonObjectType()
REPLICAS = ReplicasType()
TENSOR = TensorType()
DURATION = DurationType()
