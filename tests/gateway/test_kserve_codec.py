"""The KServe v2 tensor codec and REST bodies (pure functions; no processes)."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ai.backend.common import tensors
from ai.backend.common.tensors import TensorError
from ai.backend.gateway.errors import InvalidArgument
from ai.backend.gateway.services.kserve_codec import (
    OutputChoice,
    parse_rest_request,
    render_rest_response,
    tensor_bytes,
    tensor_values,
)

INTEGER_RANGES = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}


def representable(datatype: str) -> st.SearchStrategy[Any]:
    """Elements that survive the datatype's binary layout unchanged."""
    if datatype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[datatype]
        return st.integers(low, high)
    if datatype == "BOOL":
        return st.booleans()
    if datatype == "BYTES":
        return st.binary(max_size=12)
    if datatype == "FP16":
        return st.integers(0, 0xFFFF).map(lambda b: struct.unpack("<e", struct.pack("<H", b))[0])
    if datatype == "BF16":
        return st.integers(0, 0xFFFF).map(
            lambda b: struct.unpack("<f", struct.pack("<I", b << 16))[0]
        )
    if datatype == "FP32":
        return st.floats(width=32)
    return st.floats()


@st.composite
def tensors_of_any_type(draw: st.DrawFn) -> tuple[str, list[int], list[Any]]:
    datatype = draw(st.sampled_from(sorted(tensors.DATATYPES)))
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    values = draw(
        st.lists(representable(datatype), min_size=math.prod(shape), max_size=math.prod(shape))
    )
    return datatype, shape, values


def finite(values: list[Any]) -> bool:
    """No NaN or infinity: what JSON can carry."""
    return all(not isinstance(v, float) or math.isfinite(v) for v in values)


def same(a: list[Any], b: list[Any]) -> bool:
    """Equal element by element, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in zip(a, b)
    )


@given(tensors_of_any_type())
def test_pack_and_unpack_are_inverse(tensor: tuple[str, list[int], list[Any]]) -> None:
    datatype, shape, values = tensor
    raw = tensors.pack(datatype, values)
    tensors.check_size(datatype, shape, raw)
    assert same(tensors.unpack(datatype, raw), values)


@given(st.lists(tensors_of_any_type(), min_size=1, max_size=4), st.data())
@settings(max_examples=150)
def test_a_binary_request_parses_to_the_same_tensors(
    inputs: list[tuple[str, list[int], list[Any]]], data: st.DataObject
) -> None:
    """Any mix of binary and JSON inputs: binary ones reach the model as base64 of exactly
    their bytes (whatever their order), JSON ones as flat lists."""
    binary_flags = [
        dt in ("FP16", "BF16", "BYTES") or not finite(values) or data.draw(st.booleans())
        for dt, _, values in inputs
    ]
    entries, blobs = [], []
    for index, ((datatype, shape, values), binary) in enumerate(zip(inputs, binary_flags)):
        entry: dict[str, Any] = {"name": f"in{index}", "datatype": datatype, "shape": shape}
        if binary:
            raw = tensors.pack(datatype, values)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = values
        entries.append(entry)
    head = json.dumps({"id": "x", "inputs": entries}).encode()
    call = parse_rest_request(head + b"".join(blobs), str(len(head)) if blobs else None)
    assert call.request_id == "x"
    for sent, got, binary in zip(inputs, call.payload["inputs"], binary_flags):
        datatype, shape, values = sent
        assert (got["datatype"], got["shape"]) == (datatype, shape)
        if binary:
            assert base64.b64decode(got["data_b64"]) == tensors.pack(datatype, values)
            assert "parameters" not in got
        else:
            assert same(got["data"], values)


@given(tensors_of_any_type(), st.booleans())
def test_a_response_output_renders_as_binary_or_json(
    tensor: tuple[str, list[int], list[Any]], binary: bool
) -> None:
    datatype, shape, values = tensor
    assume(binary or finite(values))
    raw = tensors.pack(datatype, values)
    output = {
        "name": "y",
        "datatype": datatype,
        "shape": shape,
        "data_b64": base64.b64encode(raw).decode(),
    }
    head, blobs = render_rest_response(
        {"outputs": [output]},
        model_name="m",
        model_version="1",
        response_id="r",
        choice=OutputChoice(binary_by_default=binary),
    )
    answer = json.loads(head)
    [entry] = answer["outputs"]
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("m", "1", "r")
    if binary:
        assert entry["parameters"] == {"binary_data_size": len(raw)}
        assert blobs == raw
    else:
        assert blobs is None
        expected = tensor_values(output)
        assert same(entry["data"], expected)
        assert tensor_bytes({**entry}) == raw or datatype == "BYTES"


def test_nested_json_data_is_flattened() -> None:
    body = {
        "inputs": [{"name": "a", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]
    }
    call = parse_rest_request(json.dumps(body).encode(), None)
    assert call.payload["inputs"][0]["data"] == [1, 2, 3, 4]


def test_requested_outputs_come_in_the_order_asked_and_binary_per_output() -> None:
    body = {
        "inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [1]}],
        "outputs": [{"name": "b", "parameters": {"binary_data": True}}, {"name": "a"}],
        "parameters": {"binary_data_output": False, "custom": 1},
    }
    call = parse_rest_request(json.dumps(body).encode(), None)
    assert call.payload["outputs"] == [{"name": "b"}, {"name": "a"}]
    assert call.payload["parameters"] == {"custom": 1}
    result = {
        "outputs": [
            {"name": "a", "datatype": "INT8", "shape": [1], "data": [1]},
            {"name": "b", "datatype": "INT8", "shape": [1], "data": [2]},
            {"name": "c", "datatype": "INT8", "shape": [1], "data": [3]},
        ]
    }
    head, blobs = render_rest_response(
        result, model_name="m", model_version=None, response_id="r", choice=call.outputs
    )
    assert [o["name"] for o in json.loads(head)["outputs"]] == ["b", "a"]
    assert blobs == b"\x02"
    missing = OutputChoice(names=("zzz",), binary=(False,))
    with pytest.raises(InvalidArgument, match="unexpected inference output 'zzz'"):
        render_rest_response(
            result, model_name="m", model_version=None, response_id="r", choice=missing
        )


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (b"[1]", None, "the request must be a JSON object"),
        (b"{}", None, "inputs: a non-empty list of tensors is required"),
        (b'{"inputs": []}', "99", "Inference-Header-Content-Length 99 is outside the body"),
        (
            b'{"inputs": [{"name": "a", "datatype": "FP8", "shape": [1], "data": [1]}]}',
            None,
            "input 'a': unknown datatype 'FP8'",
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [1.5]}]}',
            None,
            "input 'a': INT8 data must be integers, not float",
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "INT8", "shape": [-1], "data": [1]}]}',
            None,
            "input 'a': shape [-1]: dimensions must be integers >= 0",
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], '
            b'"parameters": {"binary_data_size": 4}}]}xxxxyy',
            "100",
            "2 bytes of binary data are not claimed by any input",
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [2], '
            b'"parameters": {"binary_data_size": 4}}]}xxxx',
            "100",
            "input 'a': shape [2] of FP32 takes 8 bytes, the data has 4",
        ),
        (
            b'{"parameters": {"binary_data_output": "yes"}, "inputs": []}',
            None,
            "binary_data_output: must be a boolean",
        ),
    ],
)
def test_malformed_requests_say_what_is_wrong(
    body: bytes, header: str | None, message: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_rest_request(body, header)
    assert caught.value.message.startswith(message)


def test_bytes_elements_that_overrun_their_data_are_refused() -> None:
    with pytest.raises(TensorError, match="ends inside an element"):
        tensors.split_bytes(b"\x05\x00\x00\x00abc")
