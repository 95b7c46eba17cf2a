"""KServe v2 tensor data (DESIGN.md §5a; protocols.md §2.3, §2.6): the datatypes and their
binary layout, as the REST binary extension, gRPC raw contents and envelope payloads (base64)
carry them. Standard library only, like :mod:`.framing`: the runtime uses it inside any image.

Binary layout: little-endian, row-major, no padding; ``BOOL`` one byte (0/1); ``BF16`` the upper
half of an IEEE float32; ``BYTES`` each element a 4-byte little-endian length and its bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any, Final

# struct format characters of the fixed-size datatypes (BF16 travels as UINT16 bits)
_FORMATS: Final = {
    "BOOL": "?",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
    "BF16": "H",
}
BYTES: Final = "BYTES"
DATATYPES: Final = frozenset([*_FORMATS, BYTES])
INTEGER_TYPES: Final = frozenset(
    ["UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
)
FLOAT_TYPES: Final = frozenset(["FP16", "FP32", "FP64", "BF16"])
_LENGTH = struct.Struct("<I")


class TensorError(ValueError):
    """Tensor data that does not fit its datatype or shape; the message says how."""


def element_size(datatype: str) -> int | None:
    """Bytes per element; ``None`` for ``BYTES`` (variable). ``TensorError`` for an unknown
    datatype."""
    if datatype == BYTES:
        return None
    try:
        return struct.calcsize("<" + _FORMATS[datatype])
    except KeyError:
        raise TensorError(f"unknown datatype {datatype!r}") from None


def element_count(shape: Sequence[int]) -> int:
    """Elements of a tensor of ``shape`` (1 for a scalar shape ``[]``)."""
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise TensorError(f"shape {list(shape)}: dimensions must be integers >= 0")
    return math.prod(shape)


def flatten(data: Any) -> list[Any]:
    """Nested JSON lists (``[[1, 2], [3, 4]]``) as one flat row-major list; a scalar as a list
    of one. Iterative: deep nesting cannot exhaust the stack."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack: list[Iterable[Any]] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def check_values(datatype: str, values: Sequence[Any]) -> None:
    """``TensorError`` unless every element has the JSON type of ``datatype`` (no coercion of
    strings into numbers, nor of floats into integers)."""
    if datatype == BYTES:
        bad = next((v for v in values if not isinstance(v, str | bytes)), None)
        wanted = "strings"
    elif datatype == "BOOL":
        bad = next((v for v in values if not isinstance(v, bool)), None)
        wanted = "booleans"
    elif datatype in INTEGER_TYPES:
        bad = next((v for v in values if not isinstance(v, int) or isinstance(v, bool)), None)
        wanted = "integers"
    elif datatype in FLOAT_TYPES:
        bad = next(
            (v for v in values if not isinstance(v, int | float) or isinstance(v, bool)), None
        )
        wanted = "numbers"
    else:
        raise TensorError(f"unknown datatype {datatype!r}")
    if bad is not None:
        raise TensorError(f"{datatype} data must be {wanted}, not {type(bad).__name__}")


def pack(datatype: str, values: Sequence[Any]) -> bytes:
    """A flat list of elements in the binary layout of ``datatype``; ``TensorError`` for an
    element out of range or of the wrong type."""
    if datatype == BYTES:
        parts = []
        for value in values:
            raw = value.encode() if isinstance(value, str) else bytes(value)
            parts += [_LENGTH.pack(len(raw)), raw]
        return b"".join(parts)
    code = _format(datatype)
    if datatype == "BF16":
        values = [_bf16_bits(float(v)) for v in values]
    try:
        return struct.pack(f"<{len(values)}{code}", *values)
    except (struct.error, OverflowError, TypeError) as e:
        raise TensorError(f"{datatype} data: {e}") from None


def unpack(datatype: str, raw: bytes | bytearray | memoryview) -> list[Any]:
    """The flat list of elements of ``raw`` (``BYTES`` elements as ``bytes``); ``TensorError``
    when its size does not fit the datatype."""
    if datatype == BYTES:
        return split_bytes(raw)
    code = _format(datatype)
    size = struct.calcsize("<" + code)
    if len(raw) % size:
        raise TensorError(f"{len(raw)} bytes are no whole number of {datatype} elements")
    values = list(struct.unpack(f"<{len(raw) // size}{code}", raw))
    if datatype == "BF16":
        return [struct.unpack("<f", struct.pack("<I", bits << 16))[0] for bits in values]
    return values


def split_bytes(raw: bytes | bytearray | memoryview) -> list[bytes]:
    """The elements of ``BYTES`` data (4-byte little-endian length, then the bytes)."""
    view = memoryview(raw)
    elements, offset = [], 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise TensorError("BYTES data ends inside an element's length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise TensorError("BYTES data ends inside an element")
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    return elements


def check_size(datatype: str, shape: Sequence[int], raw: bytes | bytearray | memoryview) -> None:
    """``TensorError`` unless ``raw`` holds exactly the elements of ``shape``."""
    count = element_count(shape)
    size = element_size(datatype)
    if size is None:
        found = len(split_bytes(raw))
        if found != count:
            raise TensorError(f"shape {list(shape)} has {count} elements, the data {found}")
    elif len(raw) != count * size:
        raise TensorError(
            f"shape {list(shape)} of {datatype} takes {count * size} bytes, the data has {len(raw)}"
        )


def _format(datatype: str) -> str:
    try:
        return _FORMATS[datatype]
    except KeyError:
        raise TensorError(f"unknown datatype {datatype!r}") from None


def _bf16_bits(value: float) -> int:
    """The BF16 nearest to ``value`` (round half to even), as its 16 bits."""
    (bits,) = struct.unpack("<I", struct.pack("<f", value))
    if math.isnan(value):
        return (bits >> 16) | 0x40  # stays a NaN
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF
