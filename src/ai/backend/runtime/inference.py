"""What ``@app.model`` handlers receive and return: KServe v2 inference requests and responses
(DESIGN.md §5a). Standard library only; ``as_numpy`` / ``from_numpy`` import numpy when called.

The payload of an inference envelope has the v2 request shape, with each tensor's data either a
flat JSON list (``data``) or its binary layout in base64 (``data_b64``, see
:mod:`ai.backend.common.tensors`)::

    {"id": "r1", "parameters": {}, "outputs": [{"name": "y"}],
     "inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]},
                {"name": "z", "datatype": "FP16", "shape": [2], "data_b64": "ADwAQA=="}]}

A handler returns an :class:`InferResponse` or a dict of the v2 response shape (``outputs``:
each ``name``, ``datatype``, ``shape`` and ``data`` as a list, ``bytes`` or a numpy array); the
gateway fills in ``model_name``, ``model_version`` and ``id``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from ai.backend.common import tensors
from ai.backend.common.tensors import TensorError

B64_KEY = "data_b64"


class InvalidInferRequest(ValueError):
    """The payload is not a KServe v2 inference request; the message says why."""


@dataclass
class InferInput:
    """One input tensor: ``data`` is a flat row-major list or the tensor's binary layout."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | bytes
    parameters: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list[Any]:
        """The elements as a flat list (``BYTES`` elements as ``bytes`` when sent binary)."""
        if isinstance(self.data, bytes):
            return tensors.unpack(self.datatype, self.data)
        return list(self.data)

    def to_bytes(self) -> bytes:
        """The binary layout of the tensor."""
        if isinstance(self.data, bytes):
            return self.data
        return tensors.pack(self.datatype, self.data)

    def as_numpy(self) -> Any:
        """A numpy array of ``shape`` (``BYTES``: an object array of ``bytes``; ``BF16``:
        float32). Needs numpy in the handler's environment."""
        import numpy as np

        if self.datatype == tensors.BYTES:
            elements: list[Any] = [v.encode() if isinstance(v, str) else v for v in self.to_list()]
            return np.array(elements, dtype=np.object_).reshape(self.shape)
        if self.datatype == "BF16":
            bits = np.frombuffer(self.to_bytes(), dtype="<u2").astype("<u4") << 16
            return bits.view("<f4").reshape(self.shape)
        return np.frombuffer(self.to_bytes(), dtype=numpy_dtype(self.datatype)).reshape(self.shape)


@dataclass
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    inputs: list[InferInput]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] = field(default_factory=list)

    def input(self, name: str) -> InferInput:
        """The input tensor ``name``; ``KeyError`` naming the inputs there are."""
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise KeyError(f"no input {name!r}; inputs: {', '.join(t.name for t in self.inputs)}")

    @classmethod
    def from_payload(cls, payload: Any) -> InferRequest:
        """Read an envelope's payload; :class:`InvalidInferRequest` when it is no v2 request."""
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
            raise InvalidInferRequest("the payload is not a KServe v2 request (no 'inputs' list)")
        try:
            inputs = [
                InferInput(
                    name=str(t["name"]),
                    datatype=str(t["datatype"]),
                    shape=[int(d) for d in t["shape"]],
                    data=_tensor_data(t),
                    parameters=dict(t.get("parameters") or {}),
                )
                for t in payload["inputs"]
            ]
            outputs = [
                RequestedOutput(str(o["name"]), dict(o.get("parameters") or {}))
                for o in payload.get("outputs") or []
            ]
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInferRequest(f"malformed KServe v2 request: {e!r}") from None
        request_id = payload.get("id")
        return cls(
            inputs=inputs,
            id=None if request_id is None else str(request_id),
            parameters=dict(payload.get("parameters") or {}),
            outputs=outputs,
        )


@dataclass
class InferOutput:
    """One output tensor: ``data`` is a flat row-major list or the tensor's binary layout."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | bytes
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_numpy(cls, name: str, array: Any, datatype: str | None = None) -> InferOutput:
        """An output holding a numpy array (its datatype from the array's dtype unless given)."""
        wanted = datatype or datatype_of(array.dtype)
        if wanted == tensors.BYTES:
            elements = [v if isinstance(v, bytes) else str(v).encode() for v in array.flat]
            return cls(name, wanted, list(array.shape), tensors.pack(wanted, elements))
        raw = array.astype(numpy_dtype(wanted), copy=False).tobytes()
        return cls(name, wanted, list(array.shape), raw)

    def to_payload(self) -> dict[str, Any]:
        tensor: dict[str, Any] = {"name": self.name, "datatype": self.datatype, "shape": self.shape}
        if self.parameters:
            tensor["parameters"] = self.parameters
        if isinstance(self.data, bytes | bytearray | memoryview):
            tensor[B64_KEY] = base64.b64encode(self.data).decode()
        else:
            tensor["data"] = list(self.data)
        return tensor


@dataclass
class InferResponse:
    outputs: list[InferOutput]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"outputs": [o.to_payload() for o in self.outputs]}
        if self.id is not None:
            payload["id"] = self.id
        if self.parameters:
            payload["parameters"] = self.parameters
        return payload


def response_payload(result: Any) -> Any:
    """A model handler's result as it travels on: an :class:`InferResponse`, or a dict of the
    v2 response shape whose outputs' ``data`` may be ``bytes`` or numpy arrays (then base64)."""
    if isinstance(result, InferResponse):
        return result.to_payload()
    if not isinstance(result, dict) or not isinstance(result.get("outputs"), list):
        return result
    outputs = []
    for output in result["outputs"]:
        if isinstance(output, InferOutput):
            outputs.append(output.to_payload())
            continue
        data = output.get("data") if isinstance(output, dict) else None
        if hasattr(data, "dtype") and hasattr(data, "tobytes"):  # a numpy array
            tensor = InferOutput.from_numpy(str(output["name"]), data, output.get("datatype"))
            tensor.parameters = dict(output.get("parameters") or {})
            outputs.append(tensor.to_payload())
        elif isinstance(data, bytes | bytearray | memoryview):
            copy = {k: v for k, v in output.items() if k != "data"}
            copy[B64_KEY] = base64.b64encode(data).decode()
            outputs.append(copy)
        else:
            outputs.append(output)
    return {**result, "outputs": outputs}


_NUMPY_DTYPES = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def numpy_dtype(datatype: str) -> str:
    """The little-endian numpy dtype of a fixed-size datatype (not ``BYTES`` nor ``BF16``)."""
    try:
        return _NUMPY_DTYPES[datatype]
    except KeyError:
        raise TensorError(f"no numpy dtype for {datatype!r}") from None


def datatype_of(dtype: Any) -> str:
    """The v2 datatype of a numpy dtype (object and string arrays: ``BYTES``)."""
    if dtype.kind in ("O", "S", "U"):
        return tensors.BYTES
    for datatype, code in _NUMPY_DTYPES.items():
        if dtype.kind == "b" and datatype == "BOOL":
            return datatype
        if dtype.kind != "b" and dtype.str.lstrip("<>|=") == code.lstrip("<>|="):
            return datatype
    raise TensorError(f"no KServe v2 datatype for numpy dtype {dtype}")


def _tensor_data(tensor: dict[str, Any]) -> list[Any] | bytes:
    if B64_KEY in tensor:
        try:
            return base64.b64decode(tensor[B64_KEY], validate=True)
        except (binascii.Error, TypeError) as e:
            raise ValueError(f"input {tensor.get('name')!r}: {B64_KEY} is not base64: {e}") from e
    data = tensor["data"]
    return tensors.flatten(data)
