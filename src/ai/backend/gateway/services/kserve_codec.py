"""KServe v2 bodies ↔ inference payloads (protocols.md §2.2–§2.6, DESIGN.md §5a). Pure
functions, no I/O: the REST body with the binary tensor extension in both directions, and the
tensors of a model's response as bytes or values (shared with gRPC).

An inference payload (what travels in the envelope to the model's actor) has the v2 request
shape; each tensor carries either ``data`` (a flat list) or ``data_b64`` (its binary layout,
base64). Input tensors are validated here (datatype, shape × data), so a model never sees a
malformed request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ai.backend.common import json as wire_json
from ai.backend.common import tensors
from ai.backend.common.tensors import TensorError

from ..errors import InvalidArgument

B64_KEY = "data_b64"  # ai.backend.runtime.inference.B64_KEY
BINARY_DATA_SIZE = "binary_data_size"
BINARY_DATA = "binary_data"
BINARY_DATA_OUTPUT = "binary_data_output"
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class OutputChoice:
    """What the caller asked of the response: ``names`` (``None``: every output, in the model's
    order), and which outputs to send as binary data (REST only)."""

    names: tuple[str, ...] | None = None
    binary: tuple[bool, ...] = ()  # per name in ``names``
    binary_by_default: bool = False

    def is_binary(self, name: str) -> bool:
        if self.names is not None and name in self.names:
            return self.binary[self.names.index(name)]
        return self.binary_by_default


@dataclass(frozen=True)
class InferCall:
    """A parsed inference request: the payload for the model and what to answer with."""

    payload: dict[str, Any]
    request_id: str | None
    outputs: OutputChoice


@dataclass(frozen=True)
class RenderedTensor:
    """One output of a response: its JSON entry and, when sent binary, its bytes."""

    entry: dict[str, Any]
    raw: bytes | None


# --- requests ---------------------------------------------------------------------------------


def parse_rest_request(body: bytes, header_length: str | None) -> InferCall:
    """The REST body of ``POST …/infer``: JSON, or (``Inference-Header-Content-Length``) JSON
    followed by the binary tensors in input order. ``InvalidArgument`` naming the problem."""
    binary = b""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise InvalidArgument(f"{HEADER_LENGTH}: not an integer: {header_length!r}") from None
        if not 0 <= length <= len(body):
            raise InvalidArgument(
                f"{HEADER_LENGTH} {length} is outside the body of {len(body)} bytes"
            )
        body, binary = body[:length], body[length:]
    try:
        request = wire_json.loads(body)
    except wire_json.JSONDecodeError as e:
        raise InvalidArgument(f"malformed JSON: {e}") from None
    if not isinstance(request, dict):
        raise InvalidArgument("the request must be a JSON object")
    return parse_request_object(request, binary)


def parse_request_object(request: dict[str, Any], binary: bytes = b"") -> InferCall:
    """A v2 request object (REST JSON, or gRPC converted), with the binary data its inputs'
    ``binary_data_size`` refer to."""
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidArgument("id: must be a string")
    parameters = _parameters(request.get("parameters"), "parameters")
    binary_by_default = _flag(parameters.pop(BINARY_DATA_OUTPUT, False), BINARY_DATA_OUTPUT)
    raw_inputs = request.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument("inputs: a non-empty list of tensors is required")
    view = memoryview(binary)
    offset = 0
    inputs = []
    for index, tensor in enumerate(raw_inputs):
        entry, used = _input_tensor(tensor, index, view[offset:])
        offset += used
        inputs.append(entry)
    if offset != len(binary):
        raise InvalidArgument(
            f"{len(binary) - offset} bytes of binary data are not claimed by any input"
        )
    payload: dict[str, Any] = {"inputs": inputs}
    if request_id is not None:
        payload["id"] = request_id
    if parameters:
        payload["parameters"] = parameters
    choice = OutputChoice(binary_by_default=binary_by_default)
    raw_outputs = request.get("outputs")
    if raw_outputs is not None:
        choice, payload["outputs"] = _requested_outputs(raw_outputs, binary_by_default)
    return InferCall(payload, request_id, choice)


def _input_tensor(tensor: Any, index: int, binary: memoryview) -> tuple[dict[str, Any], int]:
    """The payload entry of input ``index`` and how many binary bytes it took."""
    where = f"inputs[{index}]"
    if not isinstance(tensor, dict):
        raise InvalidArgument(f"{where}: must be an object")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"{where}.name: a string is required")
    where = f"input {name!r}"
    if datatype not in tensors.DATATYPES:
        raise InvalidArgument(f"{where}: unknown datatype {datatype!r}")
    if not isinstance(shape, list):
        raise InvalidArgument(f"{where}: shape must be a list of integers")
    try:
        count = tensors.element_count(shape)
    except TensorError as e:
        raise InvalidArgument(f"{where}: {e}") from None
    parameters = _parameters(tensor.get("parameters"), f"{where}.parameters")
    entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    size = parameters.pop(BINARY_DATA_SIZE, None)
    if parameters:
        entry["parameters"] = parameters
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"{where}: {BINARY_DATA_SIZE} must be an integer >= 0")
        if size > len(binary):
            raise InvalidArgument(
                f"{where}: {BINARY_DATA_SIZE} {size} is more than the {len(binary)} binary"
                " bytes left"
            )
        raw = binary[:size]
        try:
            tensors.check_size(datatype, shape, raw)
        except TensorError as e:
            raise InvalidArgument(f"{where}: {e}") from None
        entry[B64_KEY] = base64.b64encode(raw).decode()
        return entry, size
    if "data" not in tensor:
        raise InvalidArgument(f"{where}: data (or parameters.{BINARY_DATA_SIZE}) is required")
    values = tensors.flatten(tensor["data"])
    if len(values) != count:
        raise InvalidArgument(f"{where}: shape {shape} has {count} elements, data {len(values)}")
    try:
        tensors.check_values(datatype, values)
    except TensorError as e:
        raise InvalidArgument(f"{where}: {e}") from None
    entry["data"] = values
    return entry, 0


def _requested_outputs(
    raw_outputs: Any, binary_by_default: bool
) -> tuple[OutputChoice, list[dict[str, Any]]]:
    if not isinstance(raw_outputs, list):
        raise InvalidArgument("outputs: must be a list")
    names: list[str] = []
    binary: list[bool] = []
    entries = []
    for index, output in enumerate(raw_outputs):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidArgument(f"outputs[{index}]: an object with a name is required")
        parameters = _parameters(output.get("parameters"), f"outputs[{index}].parameters")
        wanted = parameters.pop(BINARY_DATA, binary_by_default)
        names.append(output["name"])
        binary.append(_flag(wanted, f"outputs[{index}].parameters.{BINARY_DATA}"))
        entry: dict[str, Any] = {"name": output["name"]}
        if parameters:
            entry["parameters"] = parameters
        entries.append(entry)
    return OutputChoice(tuple(names), tuple(binary), binary_by_default), entries


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: must be an object")
    return dict(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{where}: must be a boolean")
    return value


# --- responses --------------------------------------------------------------------------------


class BadModelResponse(ValueError):
    """The model answered with something that is not a v2 response."""


def response_outputs(result: Any, choice: OutputChoice) -> list[dict[str, Any]]:
    """The output tensors of a model's answer that the caller asked for, in the order asked
    (``InvalidArgument`` for an output the model did not produce)."""
    if not isinstance(result, dict) or not isinstance(result.get("outputs"), list):
        raise BadModelResponse("the model's answer has no 'outputs' list")
    outputs = result["outputs"]
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise BadModelResponse("every output of the model's answer needs a name")
    if choice.names is None:
        return list(outputs)
    by_name = {o["name"]: o for o in outputs}
    missing = [name for name in choice.names if name not in by_name]
    if missing:
        raise InvalidArgument(f"unexpected inference output {missing[0]!r} for this model")
    return [by_name[name] for name in choice.names]


def tensor_bytes(output: dict[str, Any]) -> bytes:
    """An output's binary layout, from ``data_b64`` or its ``data`` list."""
    datatype = _datatype(output)
    if B64_KEY in output:
        try:
            return base64.b64decode(output[B64_KEY], validate=True)
        except (binascii.Error, TypeError, ValueError) as e:
            raise BadModelResponse(f"output {output['name']!r}: bad {B64_KEY}: {e}") from None
    try:
        return tensors.pack(datatype, tensors.flatten(output.get("data", [])))
    except TensorError as e:
        raise BadModelResponse(f"output {output['name']!r}: {e}") from None


def tensor_values(output: dict[str, Any]) -> list[Any]:
    """An output's elements as JSON values (``BYTES`` as strings)."""
    datatype = _datatype(output)
    if B64_KEY in output:
        try:
            values = tensors.unpack(datatype, tensor_bytes(output))
        except TensorError as e:
            raise BadModelResponse(f"output {output['name']!r}: {e}") from None
    else:
        values = tensors.flatten(output.get("data", []))
    if datatype == tensors.BYTES:
        return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in values]
    return values


def output_shape(output: dict[str, Any]) -> list[int]:
    shape = output.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        raise BadModelResponse(f"output {output['name']!r}: shape must be a list of integers")
    return shape


def _datatype(output: dict[str, Any]) -> str:
    datatype = output.get("datatype")
    if datatype not in tensors.DATATYPES:
        raise BadModelResponse(f"output {output['name']!r}: unknown datatype {datatype!r}")
    return str(datatype)


def render_rest_response(
    result: Any,
    *,
    model_name: str,
    model_version: str | None,
    response_id: str,
    choice: OutputChoice,
) -> tuple[bytes, bytes | None]:
    """The JSON of the response and, when some output goes binary, the blobs that follow it
    (then the body is JSON + blobs with ``Inference-Header-Content-Length``)."""
    rendered = [
        _render_tensor(o, choice.is_binary(o["name"])) for o in response_outputs(result, choice)
    ]
    response: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        response["model_version"] = model_version
    response["id"] = response_id
    parameters = result.get("parameters")
    if isinstance(parameters, dict) and parameters:
        response["parameters"] = parameters
    response["outputs"] = [t.entry for t in rendered]
    blobs = [t.raw for t in rendered if t.raw is not None]
    return wire_json.dumps(response), (b"".join(blobs) if blobs else None)


def _render_tensor(output: dict[str, Any], binary: bool) -> RenderedTensor:
    entry: dict[str, Any] = {
        "name": output["name"],
        "datatype": _datatype(output),
        "shape": output_shape(output),
    }
    parameters = dict(output.get("parameters") or {})
    if binary:
        raw = tensor_bytes(output)
        entry["parameters"] = {**parameters, BINARY_DATA_SIZE: len(raw)}
        return RenderedTensor(entry, raw)
    if parameters:
        entry["parameters"] = parameters
    entry["data"] = tensor_values(output)
    return RenderedTensor(entry, None)


def split_outputs(outputs: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], bytes]]:
    """Each output's metadata (name, datatype, shape, parameters) and binary layout, as gRPC's
    ``raw_output_contents`` carries them."""
    return [
        (
            {
                "name": o["name"],
                "datatype": _datatype(o),
                "shape": output_shape(o),
                "parameters": dict(o.get("parameters") or {}),
            },
            tensor_bytes(o),
        )
        for o in outputs
    ]
