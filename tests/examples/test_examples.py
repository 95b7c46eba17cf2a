"""The examples as a user deploys them: the actor specs of ``examples/dev-stack.yaml`` applied
from their files to a real manager with an agent that has mock GPUs, their tool files served by
a real gateway, and every example called through the gateway (tools over REST, the job's SSE
stream, KServe v2); then the bring-your-own-venv example under a venv made by the test."""

from __future__ import annotations

import asyncio
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import examples.byo_venv.app  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import examples.counter.app  # noqa: F401
import examples.double_then_increment.app  # noqa: F401
import examples.echo.app  # noqa: F401
import examples.fan_out.app  # noqa: F401
import examples.gpu.app  # noqa: F401
import examples.kserve.app  # noqa: F401
import examples.token_stream.app  # noqa: F401
import yaml

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.manager.services.crew import crew_specs
from ai.backend.testutils.control_plane import Cluster, insert_keypair
from ai.backend.testutils.gateway import RunningGateway, gateway_for
from ai.backend.testutils.waiting import wait_until

EXAMPLES = Path("examples")
DEV_STACK = EXAMPLES / "dev-stack.yaml"
NOT_IN_DEV_STACK = {"byo_venv"}  # needs a venv the user creates first
MOCK_GPUS = (("Mock A100", "40g"), ("Mock A100", "40g"))


def spec_from_file(path: Path) -> dict[str, Any]:
    """The spec as ``actor apply -f`` sends it: a relative ``pythonpath`` or ``python`` resolved
    against the file's folder."""
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    folder = path.resolve().parent
    spec["pythonpath"] = [str((folder / entry).resolve()) for entry in spec.get("pythonpath", [])]
    if "python" in spec and not Path(spec["python"]).is_absolute():
        spec["python"] = str(folder / spec["python"])
    return spec


async def apply(cluster: Cluster, spec: dict[str, Any]) -> None:
    body = {key: value for key, value in spec.items() if key != "name"}
    response = await cluster.manager.client().put(f"/v1/actors/{spec['name']}", body)
    assert response.status == 201, response.body


def tool_directory(files: list[Path], target: Path) -> Path:
    """The tool files in one directory, as the gateway's ``[tools] path`` takes them."""
    target.mkdir()
    for file in files:
        shutil.copy(file, target / f"{file.parent.name}.yaml")
    return target


async def registry_reading_gateway(cluster: Cluster, tools: Path) -> RunningGateway:
    """A gateway that serves ``tools`` and reads the model registry with a gateway keypair."""
    reader = await insert_keypair(cluster.manager.database_url, "gateway")
    return await gateway_for(
        cluster,
        tools,
        extra={
            "BACKEND_MANAGER__API": cluster.manager.endpoint,
            "BACKEND_MANAGER__ACCESS_KEY": reader.access_key,
            "BACKEND_MANAGER__SECRET_KEY": reader.secret_key,
        },
    )


async def call_tool(gateway: RunningGateway, tool: str, arguments: dict[str, Any]) -> Any:
    """The result of a tool call that must succeed within 30 s."""
    status, job = await gateway.post(f"/v1/tools/{tool}/call?wait=30", {"arguments": arguments})
    assert (status, job["status"], job["error"]) == (200, "succeeded", None), job
    return job["result"]


async def check_echo(gateway: RunningGateway) -> None:
    assert await call_tool(gateway, "echo", {"message": "hello"}) == {"message": "hello"}


async def check_pipeline(gateway: RunningGateway) -> None:
    assert await call_tool(gateway, "double_then_increment", {"value": 10}) == {"value": 25}


async def check_fan_out_and_fan_in(gateway: RunningGateway) -> None:
    status, handle = await gateway.post(
        "/v1/tools/square_all/call", {"arguments": {"values": [1, 2, 3, 4]}}
    )
    assert status == 202, handle
    events = await gateway.sse(handle["job_id"])
    assert events[-1].event == "succeeded"
    assert events[-1].data["result"] == {
        "results": [{"value": 1}, {"value": 4}, {"value": 9}, {"value": 16}]
    }
    progress = [e.data["data"] for e in events if e.event == "progress"]
    assert progress == [{"progress": 1, "total": 1, "message": "split into 4 branches"}]
    squaring = {e.data["envelope_id"] for e in events if e.data.get("actor") == "squarer"}
    assert len(squaring) == 4  # one message per branch
    assert await call_tool(gateway, "square_all", {"values": []}) == {"values": []}


async def check_streamed_tokens(gateway: RunningGateway) -> None:
    text = "the quick brown fox"
    status, handle = await gateway.post(
        "/v1/tools/stream_tokens/call", {"arguments": {"text": text, "seconds_per_token": 0}}
    )
    assert status == 202, handle
    events = await gateway.sse(handle["job_id"])
    assert [e.data["data"] for e in events if e.event == "partial"] == [
        {"token": "the"},
        {"token": "quick"},
        {"token": "brown"},
        {"token": "fox"},
    ]
    assert (events[-1].event, events[-1].data["result"]) == (
        "succeeded",
        {"text": text, "tokens": 4},
    )


async def check_state_kept_across_calls(gateway: RunningGateway) -> None:
    answers = [await call_tool(gateway, "count", {"amount": n}) for n in (5, 2)]
    answers.append(await call_tool(gateway, "count", {}))  # the schema's default amount: 1
    assert [(a["calls"], a["total"]) for a in answers] == [(1, 5), (2, 7), (3, 8)]
    assert len({a["process_id"] for a in answers}) == 1


async def check_kserve_echo(gateway: RunningGateway) -> None:
    async def model_ready() -> bool:
        status, _ = await gateway.get("/v2/models/echo/ready")
        return status == 200

    await wait_until(model_ready, what="the echo model in the registry", timeout=30)
    tensor = {"name": "INPUT0", "datatype": "FP32", "shape": [3], "data": [1.5, 2.0, -3.25]}
    status, answer = await gateway.post("/v2/models/echo/infer", {"id": "r-1", "inputs": [tensor]})
    assert (status, answer) == (
        200,
        {"model_name": "echo", "model_version": "1", "id": "r-1", "outputs": [tensor]},
    )
    status, metadata = await gateway.get("/v2/models/echo")
    assert (status, metadata["versions"], metadata["inputs"]) == (
        200,
        ["1"],
        [{"name": "INPUT0", "datatype": "FP32", "shape": [-1]}],
    )
    assert await call_tool(gateway, "echo_tensors", {"inputs": [tensor]}) == {"outputs": [tensor]}


async def check_gpu(gateway: RunningGateway, cluster: Cluster) -> None:
    [replica] = await cluster.running_replicas("gpu-probe", 1)
    assert (replica["agent_id"], replica["slots"]["cuda.shares"]) == ("gpu-node", "0.5")
    [device] = replica["device_ids"]
    assert device in ("0", "1")
    assert await call_tool(gateway, "gpu_info", {}) == {
        "CUDA_VISIBLE_DEVICES": device,
        "BACKEND_GPU_SHARE": "0.5",
        "devices": [device],
    }


def test_the_dev_stack_lists_every_example_but_the_one_needing_a_venv() -> None:
    stack = yaml.safe_load(DEV_STACK.read_text())
    folders = {p.parent for p in EXAMPLES.glob("*/app.py") if p.parent.name not in NOT_IN_DEV_STACK}
    assert sorted(stack["actors"]) == sorted(
        str(spec)
        for folder in folders
        for spec in folder.glob("*.yaml")
        if spec.name != "tools.yaml"
    )
    assert sorted(stack["tools"]) == sorted(str(folder / "tools.yaml") for folder in folders)


def test_the_dev_stack_fits_one_agent_on_a_two_core_machine() -> None:
    """``dev up`` agents offer the CPUs they detect: every example and the crew must fit in two
    cores, or some examples stay pending on a small machine."""
    stack = yaml.safe_load(DEV_STACK.read_text())
    specs = [ActorSpec.from_yaml(Path(path).read_text()) for path in stack["actors"]]
    specs += crew_specs()
    wanted = sum(spec.resources.amount("cpu") * spec.scaling.min_replicas for spec in specs)
    assert wanted <= 2


async def test_every_example_of_the_dev_stack_answers_through_the_gateway(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.add_agent("gpu-node", mock_gpus=MOCK_GPUS)
    stack = yaml.safe_load(DEV_STACK.read_text())
    specs = [spec_from_file(Path(path)) for path in stack["actors"]]
    for spec in specs:
        await apply(cluster, spec)
    tools = tool_directory([Path(path) for path in stack["tools"]], tmp_path / "tools")
    gateway = await registry_reading_gateway(cluster, tools)
    for spec in specs:
        await cluster.running_replicas(
            spec["name"], spec.get("scaling", {}).get("min_replicas", 1), timeout=90
        )
    status, listed = await gateway.get("/v1/tools")
    assert status == 200
    assert [tool["name"] for tool in listed["items"]] == [
        "count",
        "double_then_increment",
        "echo",
        "echo_tensors",
        "gpu_info",
        "square_all",
        "stream_tokens",
    ]
    await asyncio.gather(
        check_echo(gateway),
        check_pipeline(gateway),
        check_fan_out_and_fan_in(gateway),
        check_streamed_tokens(gateway),
        check_state_kept_across_calls(gateway),
        check_kserve_echo(gateway),
        check_gpu(gateway, cluster),
    )


def make_venv(path: Path, marker_version: str) -> Path:
    """A venv without pip holding one pretend distribution, ``venv-marker``; its interpreter."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    [site_packages] = path.glob("lib/python*/site-packages")
    marker = site_packages / f"venv_marker-{marker_version}.dist-info"
    marker.mkdir()
    (marker / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: venv-marker\nVersion: {marker_version}\n"
    )
    return path / "bin" / "python"


async def test_the_byo_venv_example_runs_under_the_interpreter_of_its_venv(
    cluster: Cluster, tmp_path: Path
) -> None:
    folder = EXAMPLES / "byo_venv"
    spec = spec_from_file(folder / "venv-probe.yaml")
    assert spec["python"] == str(folder.resolve() / ".venv/bin/python")  # what the docs create
    python = make_venv(tmp_path / "venv", "1.2.3")
    await cluster.add_agent("node-1")
    await apply(cluster, {**spec, "python": str(python)})
    gateway = await gateway_for(cluster, tool_directory([folder / "tools.yaml"], tmp_path / "t"))
    await cluster.running_replicas("venv-probe", 1)
    answer = await call_tool(gateway, "venv_info", {"packages": ["venv-marker", "no-such-dist"]})
    assert answer == {
        "executable": str(python),
        "prefix": str(tmp_path / "venv"),
        "in_venv": True,
        "python_version": platform.python_version(),
        "packages": {"venv-marker": "1.2.3", "no-such-dist": None},
    }
