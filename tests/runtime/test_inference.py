"""KServe v2 model handlers: the ``InferRequest`` they get and the answers they may give."""

from __future__ import annotations

import base64

import examples.kserve_echo  # noqa: F401  (the handler the child loads)
import pytest

from ai.backend.runtime import InferOutput, InferRequest, InferResponse, InvalidInferRequest
from ai.backend.runtime.inference import response_payload
from ai.backend.testutils.runtime import RuntimeLauncher

FP16_ONE_TWO = base64.b64encode(b"\x00<\x00@").decode()


def test_a_request_reads_list_and_binary_inputs() -> None:
    request = InferRequest.from_payload(
        {
            "id": "r",
            "parameters": {"p": 1},
            "inputs": [
                {"name": "a", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
                {"name": "h", "datatype": "FP16", "shape": [2], "data_b64": FP16_ONE_TWO},
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    )
    assert (request.id, request.parameters) == ("r", {"p": 1})
    assert request.input("a").data == [1, 2, 3, 4]
    assert request.input("h").data == b"\x00<\x00@"
    assert request.input("h").to_list() == [1.0, 2.0]
    assert (
        request.input("a").to_bytes()
        == b"\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00"
    )
    assert [o.name for o in request.outputs] == ["y"]


@pytest.mark.parametrize(
    "payload",
    [
        {"value": 1},
        {"inputs": [{"name": "a"}]},
        {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data_b64": "!!"}]},
        [1, 2],
    ],
)
def test_a_payload_that_is_no_v2_request_is_refused(payload: object) -> None:
    with pytest.raises(InvalidInferRequest):
        InferRequest.from_payload(payload)


def test_binary_outputs_travel_as_base64() -> None:
    response = InferResponse(
        outputs=[
            InferOutput("b", "FP16", [2], b"\x00<\x00@"),
            InferOutput("l", "INT64", [1], [7]),
        ],
        id="r",
    )
    assert response_payload(response) == {
        "outputs": [
            {"name": "b", "datatype": "FP16", "shape": [2], "data_b64": FP16_ONE_TWO},
            {"name": "l", "datatype": "INT64", "shape": [1], "data": [7]},
        ],
        "id": "r",
    }


def test_a_dict_answer_with_bytes_data_is_encoded() -> None:
    answer = {"outputs": [{"name": "b", "datatype": "UINT8", "shape": [2], "data": b"\x01\x02"}]}
    assert response_payload(answer) == {
        "outputs": [{"name": "b", "datatype": "UINT8", "shape": [2], "data_b64": "AQI="}]
    }


def test_numpy_round_trip() -> None:
    np = pytest.importorskip("numpy")
    request = InferRequest.from_payload(
        {"inputs": [{"name": "h", "datatype": "FP16", "shape": [1, 2], "data_b64": FP16_ONE_TWO}]}
    )
    array = request.input("h").as_numpy()
    assert array.dtype == np.float16 and array.tolist() == [[1.0, 2.0]]
    output = InferOutput.from_numpy("y", array * 2)
    assert (output.datatype, output.shape, output.data) == ("FP16", [1, 2], (array * 2).tobytes())


async def test_an_app_model_gets_an_infer_request_over_the_socket(
    runtimes: RuntimeLauncher,
) -> None:
    rt = await runtimes.connect("examples.kserve_echo:app")
    tensor = {"name": "x", "datatype": "BYTES", "shape": [1], "data": ["hi"]}
    [result] = await rt.call("c", {"id": "r", "inputs": [tensor]}, model="echo", version="1")
    assert result["result"] == {"id": "r", "outputs": [tensor]}
    [refused] = await rt.call("d", {"value": 1}, model="echo")
    assert (refused["status"], refused["exc_type"]) == ("error", "InvalidInferRequest")
