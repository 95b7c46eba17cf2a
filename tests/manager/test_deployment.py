"""The control plane end to end: a real manager and real agents with mock GPUs, replicas as
real runtime + sidecar processes, envelopes through Redis."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import examples.probes  # noqa: F401  (the replicas' handler: Pants packs it with this)

from ai.backend.testutils.control_plane import Cluster, wait_until

EXAMPLES_ROOT = os.getcwd()  # the sandbox root holds the examples package
PROBE = {
    "handler": "examples.probes:environment",
    "pythonpath": [EXAMPLES_ROOT],
    "timeout": "10s",
}


async def _job_result(cluster: Cluster, actor: str, payload: dict[str, Any]) -> dict[str, Any]:
    job_id = uuid.uuid4().hex
    await cluster.plane.publish([actor], payload, job_id=job_id)
    event = await cluster.plane.wait_terminal(job_id, timeout=30)
    assert event["kind"] == "succeeded", event
    result: dict[str, Any] = event["result"]
    return result


async def test_whole_gpus_are_placed_and_visible_to_the_handler(cluster: Cluster) -> None:
    await cluster.add_agent("gpu-node", mock_gpus=(("A100-80G", "80g"),) * 4)
    client = cluster.manager.client()
    applied = await client.put(
        "/v1/actors/gpu-probe", {**PROBE, "resources": {"cpu": 1, "cuda.device": 2}}
    )
    assert applied.status == 201
    [replica] = await cluster.running_replicas("gpu-probe", 1)
    assert replica["agent_id"] == "gpu-node"
    assert replica["device_ids"] == ["0", "1"]
    assert replica["slots"] == {"cpu": "1", "cuda.device": "2"}
    result = await _job_result(cluster, "gpu-probe", {"value": 1})
    assert result["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert result["BACKEND_GPU_SHARE"] is None
    agent = (await client.get("/v1/agents/gpu-node")).body
    assert agent["status"] == "alive"
    assert agent["slots_total"]["cuda.device"] == "4"
    assert agent["slots_used"]["cuda.device"] == "2"
    assert [d["model"] for d in agent["devices"]] == ["A100-80G"] * 4


async def test_shares_pack_two_halves_on_one_device_and_the_third_on_the_next(
    cluster: Cluster,
) -> None:
    await cluster.add_agent("gpu-node", mock_gpus=(("A10", "24g"),) * 2)
    client = cluster.manager.client()
    spec = {
        **PROBE,
        "resources": {"cpu": "0.5", "cuda.shares": "0.5"},
        "scaling": {"min_replicas": 3},
    }
    assert (await client.put("/v1/actors/half", spec)).status == 201
    replicas = await cluster.running_replicas("half", 3)
    assert sorted(r["device_ids"][0] for r in replicas) == ["0", "0", "1"]
    result = await _job_result(cluster, "half", {})
    assert result["BACKEND_GPU_SHARE"] == "0.5"
    assert result["CUDA_VISIBLE_DEVICES"] in ("0", "1")


async def test_a_killed_runtime_is_restarted_and_the_job_succeeds_once(cluster: Cluster) -> None:
    await cluster.add_agent("node-1")
    client = cluster.manager.client()
    assert (await client.put("/v1/actors/probe", PROBE)).status == 201
    [replica] = await cluster.running_replicas("probe", 1)
    state_dir = cluster.workdir / "state-node-1" / "replicas" / replica["id"]
    pids = _replica_pids(state_dir)
    os.kill(pids["runtime"], signal.SIGKILL)

    async def restarted() -> bool:
        current = (await cluster.actor("probe"))["replicas"]
        return any(
            r["id"] == replica["id"] and r["restarts"] >= 1 and r["status"] == "running"
            for r in current
        )

    await wait_until(restarted, what="the runtime restarted", timeout=30)
    result = await _job_result(cluster, "probe", {"n": 1})
    assert result["n"] == 1
    await cluster.plane.wait_quiescent()
    events = await cluster.plane.events()
    assert [e["kind"] for e in events if e["kind"] in ("succeeded", "failed")] == ["succeeded"]


def _replica_pids(state_dir: Any) -> dict[str, int]:
    import json

    state = json.loads((state_dir / "state.json").read_text())
    return {name: int(info["pid"]) for name, info in state["processes"].items()}
