"""Unmodified KServe v2 clients against a gateway, run by tests/gateway/test_kserve_clients.py
as a pex of the ``inference`` resolve: ``inference_client.py triton-http|triton-grpc|kserve-rest
URL MODEL`` runs that client's scenarios and prints one JSON object, scenario → what the client
returned (arrays as ``{"dtype", "shape", "values"}``) or ``{"error": …}`` (the exception as the
client raised it). A scenario's failure never stops the others."""

from __future__ import annotations

import asyncio
import json
import queue
import sys
from collections.abc import Callable
from typing import Any

import numpy as np  # pants: no-infer-dep (tritonclient's and kserve's dependency)

Scenario = Callable[[], Any]


def array(value: Any) -> Any:
    """A numpy array (or anything else) as JSON."""
    if isinstance(value, np.ndarray):
        values = value.tolist()
        if value.dtype == np.object_:
            values = [v.decode() if isinstance(v, bytes) else v for v in value.flatten().tolist()]
        return {"dtype": str(value.dtype), "shape": list(value.shape), "values": values}
    return value


def run_all(scenarios: dict[str, Scenario]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, scenario in scenarios.items():
        try:
            results[name] = scenario()
        except Exception as e:  # noqa: BLE001 - reported, the next scenario runs
            results[name] = {"error": f"{type(e).__name__}: {e}", **error_details(e)}
    return results


def error_details(error: Exception) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for attribute in ("status", "message"):
        method = getattr(error, attribute, None)
        if callable(method):
            details[attribute] = str(method())
    response = getattr(error, "response", None)
    if response is not None and hasattr(response, "status_code"):
        details["status"] = response.status_code
    return details


FP32 = np.array([[1.5, -2.0, 3.25], [0.0, 1e-3, 7.0]], dtype=np.float32)
FP16 = np.array([0.5, -1.0, 65504.0, 3.0], dtype=np.float16)
INT32 = np.array([[1, 2], [3, -4]], dtype=np.int32)
STRINGS = np.array([b"hello", b"", "ünïcode".encode()], dtype=np.object_)


def triton_http(url: str, model: str) -> dict[str, Any]:
    import tritonclient.http as http

    client = http.InferenceServerClient(url=url.removeprefix("http://"))

    def infer(tensor: np.ndarray, datatype: str, binary: bool, **options: Any) -> Any:
        given = http.InferInput("INPUT0", list(tensor.shape), datatype)
        given.set_data_from_numpy(tensor, binary_data=binary)
        wanted = [http.InferRequestedOutput("INPUT0", binary_data=binary)]
        result = client.infer(model, [given], outputs=wanted, **options)
        return {"array": array(result.as_numpy("INPUT0")), "response": result.get_response()}

    def two_inputs_one_output() -> Any:
        first = http.InferInput("A", [2], "INT64")
        first.set_data_from_numpy(np.array([1, 2], dtype=np.int64))
        second = http.InferInput("B", [1], "BOOL")
        second.set_data_from_numpy(np.array([True]))
        result = client.infer(model, [first, second], outputs=[http.InferRequestedOutput("B")])
        return {
            "names": [o["name"] for o in result.get_response()["outputs"]],
            "B": array(result.as_numpy("B")),
        }

    def unknown_model() -> Any:
        given = http.InferInput("X", [1], "FP32")
        given.set_data_from_numpy(np.zeros(1, dtype=np.float32))
        return client.infer("no-such-model", [given])

    return run_all(
        {
            "live": client.is_server_live,
            "ready": client.is_server_ready,
            "model_ready": lambda: client.is_model_ready(model),
            "server_metadata": client.get_server_metadata,
            "model_metadata": lambda: client.get_model_metadata(model),
            "binary": lambda: infer(FP32, "FP32", True, request_id="r-1"),
            "json": lambda: infer(INT32, "INT32", False, request_id="r-2"),
            "fp16": lambda: infer(FP16, "FP16", True),
            "bytes": lambda: infer(STRINGS, "BYTES", True),
            "two_inputs_one_output": two_inputs_one_output,
            "unknown_model": unknown_model,
        }
    )


def triton_grpc(url: str, model: str) -> dict[str, Any]:
    import tritonclient.grpc as grpc_client

    client = grpc_client.InferenceServerClient(url=url)

    def inputs(tensor: np.ndarray, datatype: str) -> list[Any]:
        given = grpc_client.InferInput("INPUT0", list(tensor.shape), datatype)
        given.set_data_from_numpy(tensor)
        return [given]

    def infer(tensor: np.ndarray, datatype: str, **options: Any) -> Any:
        result = client.infer(model, inputs(tensor, datatype), **options)
        return {
            "array": array(result.as_numpy("INPUT0")),
            "response": result.get_response(as_json=True),
        }

    def stream() -> Any:
        answers: queue.Queue[Any] = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            for index in range(3):
                tensor = np.array([index, index + 1], dtype=np.int32)
                client.async_stream_infer(model, inputs(tensor, "INT32"), request_id=f"s-{index}")
            got = [answers.get(timeout=30) for _ in range(3)]
        finally:
            client.stop_stream()
        return sorted(
            [r.get_response().id, array(r.as_numpy("INPUT0"))] if e is None else ["error", str(e)]
            for r, e in got
        )

    return run_all(
        {
            "live": client.is_server_live,
            "ready": client.is_server_ready,
            "model_ready": lambda: client.is_model_ready(model),
            "server_metadata": lambda: client.get_server_metadata(as_json=True),
            "model_metadata": lambda: client.get_model_metadata(model, as_json=True),
            "fp32": lambda: infer(FP32, "FP32", request_id="g-1"),
            "fp16": lambda: infer(FP16, "FP16"),
            "bytes": lambda: infer(STRINGS, "BYTES"),
            "stream": stream,
            "unknown_model": lambda: client.infer("no-such-model", inputs(FP16, "FP16")),
        }
    )


def kserve_rest(url: str, model: str) -> dict[str, Any]:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def scenarios() -> dict[str, Any]:
        client = InferenceRESTClient(config=RESTConfig(protocol="v2", retries=0, timeout=30))

        async def infer(tensor: np.ndarray, datatype: str, binary: bool) -> Any:
            given = InferInput("INPUT0", list(tensor.shape), datatype)
            given.set_data_from_numpy(tensor, binary_data=binary)
            request = InferRequest(model, [given], request_id="k-1")
            response = await client.infer(url, request, model_name=model)
            return {
                "id": response.id,
                "model_name": response.model_name,
                "array": array(response.outputs[0].as_numpy()),
            }

        results: dict[str, Any] = {}
        calls = {
            "live": lambda: client.is_server_live(url),
            "ready": lambda: client.is_server_ready(url),
            "model_ready": lambda: client.is_model_ready(url, model),
            "unknown_model_ready": lambda: client.is_model_ready(url, "no-such-model"),
            "json": lambda: infer(FP32, "FP32", False),
            "binary_fp16": lambda: infer(FP16, "FP16", True),
            "unknown_model": lambda: client.infer(
                url,
                InferRequest("no-such-model", [InferInput("X", [1], "FP32", [1.0])]),
                model_name="no-such-model",
            ),
        }
        for name, call in calls.items():
            try:
                results[name] = await call()
            except Exception as e:  # noqa: BLE001
                results[name] = {"error": f"{type(e).__name__}: {e}", **error_details(e)}
        await client.close()
        return results

    return asyncio.run(scenarios())


CLIENTS = {"triton-http": triton_http, "triton-grpc": triton_grpc, "kserve-rest": kserve_rest}


def main() -> None:
    tool, url, model = sys.argv[1:4]
    print(json.dumps(CLIENTS[tool](url, model), default=str))


if __name__ == "__main__":
    main()
