"""KServe v2 through the gateway with unmodified clients (tritonclient http and grpc, kserve's
REST client) and raw HTTP, against real processes: a manager, an agent running the echo model
(``examples.kserve_echo``), and a gateway with gRPC on. The clients run as a pex of their own
resolve (tests/gateway/clients) and print what they got as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import examples.kserve_echo  # noqa: F401  (the replica's handler: Pants packs it with this)
import pytest

from ai.backend.testutils.control_plane import Cluster, insert_keypair
from ai.backend.testutils.gateway import (
    RunningGateway,
    SharedStack,
    deploy,
    gateway_for,
    shared_stack,
)
from ai.backend.testutils.mcp import client_environment
from ai.backend.testutils.services import free_port
from ai.backend.testutils.waiting import wait_until

CLIENT_PEX = Path("tests/gateway/clients/inference_client.pex")
MODEL = "echo"
ERROR_TYPE = "application/json"


@dataclass(frozen=True)
class KServeSetup:
    gateway: RunningGateway
    grpc_url: str


async def _echo_model_gateway(cluster: Cluster) -> KServeSetup:
    """The echo model deployed, and a gateway that reads the model registry and serves gRPC."""
    await cluster.add_agent("node-1")
    await deploy(cluster, "kserve-echo", "examples.kserve_echo:app", concurrency=8)
    grpc_port = free_port()
    registry_reader = await insert_keypair(cluster.manager.database_url, "gateway")
    gateway = await gateway_for(
        cluster,
        None,
        extra={
            "BACKEND_MANAGER__API": cluster.manager.endpoint,
            "BACKEND_MANAGER__ACCESS_KEY": registry_reader.access_key,
            "BACKEND_MANAGER__SECRET_KEY": registry_reader.secret_key,
            "BACKEND_GRPC__ENABLED": "true",
            "BACKEND_GRPC__PORT": str(grpc_port),
        },
    )

    async def model_ready() -> bool:
        status, _ = await gateway.get(f"/v2/models/{MODEL}/ready")
        return status == 200

    await wait_until(model_ready, what="the echo model in the registry", timeout=30)
    return KServeSetup(gateway, f"127.0.0.1:{grpc_port}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack[KServeSetup]]:
    """One stack for the module: every test only reads the model and runs inferences."""
    with shared_stack(tmp_path_factory.mktemp("stack"), _echo_model_gateway) as stack:
        yield stack


@pytest.fixture
def kserve(stack: SharedStack[KServeSetup], shared_cluster: Cluster) -> KServeSetup:
    """The module's echo model and gateway, reached with this test's clients."""
    gateway = stack.built.gateway.with_session(shared_cluster.manager.session)
    return replace(stack.built, gateway=gateway)


async def run_client(tool: str, url: str) -> dict[str, Any]:
    """Run one client program's scenarios; what it printed."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENT_PEX),
        tool,
        url,
        MODEL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=client_environment(),
    )
    out, err = await asyncio.wait_for(child.communicate(), 300)
    assert child.returncode == 0, err.decode()[-3000:]
    results: dict[str, Any] = json.loads(out)
    return results


def floats(values: list[Any]) -> list[float]:
    return [float(v) for v in values]


async def test_tritonclient_http_binary_json_fp16_bytes_and_errors(kserve: KServeSetup) -> None:
    got = await run_client("triton-http", kserve.gateway.url)
    assert (got["live"], got["ready"], got["model_ready"]) == (True, True, True)
    assert "binary_tensor_data" in got["server_metadata"]["extensions"]
    assert got["model_metadata"]["name"] == MODEL
    assert got["model_metadata"]["versions"] == ["1"]
    binary = got["binary"]
    assert binary["array"] == {
        "dtype": "float32",
        "shape": [2, 3],
        "values": [[1.5, -2.0, 3.25], [0.0, pytest.approx(1e-3), 7.0]],
    }
    assert binary["response"]["id"] == "r-1"
    assert binary["response"]["model_name"] == MODEL
    assert binary["response"]["outputs"][0]["parameters"] == {"binary_data_size": 24}
    json_answer = got["json"]
    assert json_answer["array"]["values"] == [[1, 2], [3, -4]]
    assert json_answer["response"]["outputs"][0]["data"] == [1, 2, 3, -4]
    assert json_answer["response"]["id"] == "r-2"
    assert got["fp16"]["array"] == {
        "dtype": "float16",
        "shape": [4],
        "values": [0.5, -1.0, 65504.0, 3.0],
    }
    assert got["bytes"]["array"]["values"] == ["hello", "", "ünïcode"]
    assert got["two_inputs_one_output"] == {
        "names": ["B"],
        "B": {"dtype": "bool", "shape": [1], "values": [True]},
    }
    assert got["unknown_model"]["status"] == "404"
    assert "no-such-model" in got["unknown_model"]["message"]


async def test_tritonclient_grpc_raw_contents_stream_and_errors(kserve: KServeSetup) -> None:
    got = await run_client("triton-grpc", kserve.grpc_url)
    assert (got["live"], got["ready"], got["model_ready"]) == (True, True, True)
    assert "binary_tensor_data" in got["server_metadata"]["extensions"]
    assert got["model_metadata"]["name"] == MODEL
    assert got["fp32"]["array"]["shape"] == [2, 3]
    assert floats(got["fp32"]["array"]["values"][0]) == [1.5, -2.0, 3.25]
    assert got["fp32"]["response"]["id"] == "g-1"
    assert got["fp32"]["response"]["model_version"] == "1"
    assert got["fp16"]["array"] == {
        "dtype": "float16",
        "shape": [4],
        "values": [0.5, -1.0, 65504.0, 3.0],
    }
    assert got["bytes"]["array"]["values"] == ["hello", "", "ünïcode"]
    assert got["stream"] == [
        ["s-0", {"dtype": "int32", "shape": [2], "values": [0, 1]}],
        ["s-1", {"dtype": "int32", "shape": [2], "values": [1, 2]}],
        ["s-2", {"dtype": "int32", "shape": [2], "values": [2, 3]}],
    ]
    assert got["unknown_model"]["status"] == "StatusCode.NOT_FOUND"


async def test_kserve_rest_client_health_infer_and_error_message(kserve: KServeSetup) -> None:
    got = await run_client("kserve-rest", kserve.gateway.url)
    assert (got["live"], got["ready"], got["model_ready"]) == (True, True, True)
    assert got["unknown_model_ready"] is False
    assert got["json"]["id"] == "k-1"
    assert got["json"]["model_name"] == MODEL
    assert got["json"]["array"]["shape"] == [2, 3]
    assert got["binary_fp16"]["array"]["values"] == [0.5, -1.0, 65504.0, 3.0]
    # the client shows the server's message only when the content type is exactly JSON
    assert got["unknown_model"]["status"] == 404
    assert "model no-such-model is not registered" in got["unknown_model"]["error"]


async def test_rest_errors_are_json_with_the_right_status(kserve: KServeSetup) -> None:
    session, url = kserve.gateway.session, kserve.gateway.url
    infer = f"{url}/v2/models/{MODEL}/infer"
    async with session.post(f"{url}/v2/models/nope/infer", data=b"{}") as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == ERROR_TYPE
        body = await response.json()
        assert body["error"] == "model nope is not registered"
    async with session.post(infer, data=b'{"inputs": [') as response:
        assert (response.status, response.headers["Content-Type"]) == (400, ERROR_TYPE)
        assert (await response.json())["error"].startswith("malformed JSON")
    shape_mismatch = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1.0]}]}
    async with session.post(infer, json=shape_mismatch) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "input 'x': shape [3] has 3 elements, data 1"
    async with session.get(f"{url}/v2/models/{MODEL}/versions/9") as response:
        assert response.status == 404


async def test_an_infer_without_content_type_and_with_binary_output(kserve: KServeSetup) -> None:
    head = json.dumps(
        {
            "id": "raw-1",
            "inputs": [
                {
                    "name": "h",
                    "datatype": "FP16",
                    "shape": [2],
                    "parameters": {"binary_data_size": 4},
                },
                {"name": "j", "datatype": "INT8", "shape": [2], "data": [-1, 5]},
            ],
            "outputs": [{"name": "h", "parameters": {"binary_data": True}}, {"name": "j"}],
        }
    ).encode()
    body = head + b"\x00<\x00@"
    async with aiohttp.ClientSession() as session:  # sends no Content-Type for bytes
        request = session.post(
            f"{kserve.gateway.url}/v2/models/{MODEL}/versions/1/infer",
            data=body,
            headers={"Inference-Header-Content-Length": str(len(head))},
            skip_auto_headers=["Content-Type"],
        )
        async with request as response:
            raw = await response.read()
            assert response.status == 200, raw
            assert response.headers["Content-Type"] == "application/octet-stream"
            length = int(response.headers["Inference-Header-Content-Length"])
    answer = json.loads(raw[:length])
    assert answer == {
        "model_name": MODEL,
        "model_version": "1",
        "id": "raw-1",
        "outputs": [
            {"name": "h", "datatype": "FP16", "shape": [2], "parameters": {"binary_data_size": 4}},
            {"name": "j", "datatype": "INT8", "shape": [2], "data": [-1, 5]},
        ],
    }
    assert raw[length:] == b"\x00<\x00@"
