"""Replicas that follow the queue (0 → n → 0), a rolling replacement that loses nothing, and
the model registry filled from the runtimes' hellos."""

from __future__ import annotations

import asyncio
import os

import examples.models  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import examples.pipeline  # noqa: F401

from ai.backend.testutils.control_plane import Cluster, wait_until
from ai.backend.testutils.dataplane import TERMINAL_KINDS

EXAMPLES_ROOT = os.getcwd()


async def _succeeded_once(cluster: Cluster, job_ids: list[str]) -> None:
    ends = await cluster.ends_once(job_ids)
    assert {e["kind"] for e in ends.values()} == {"succeeded"}


async def test_replicas_follow_the_queue_from_zero_and_back(cluster: Cluster) -> None:
    await cluster.add_agent("node-1")
    client = cluster.manager.client()
    spec = {
        "handler": "examples.pipeline:double_slowly",
        "pythonpath": [EXAMPLES_ROOT],
        "scaling": {
            "min_replicas": 0,
            "max_replicas": 3,
            "queue_length": 2,
            "polling_interval": "0.2s",
            "cooldown": "2s",
            "scale_up": {"period": "0.5s"},
            "scale_down": {"period": "0.5s"},
        },
    }
    assert (await client.put("/v1/actors/elastic", spec)).status == 201
    actor = await cluster.actor("elastic")
    assert (actor["desired_replicas"], actor["replicas"]) == (0, [])
    job_ids = await cluster.publish_jobs("elastic", [{"value": i} for i in range(24)])
    most = 0

    async def all_done() -> bool:
        nonlocal most
        body = await cluster.actor("elastic")
        most = max(most, body["running_replicas"])
        ended = {e["job_id"] for e in await cluster.plane.events() if e["kind"] in TERMINAL_KINDS}
        return set(job_ids) <= ended

    await wait_until(all_done, what="the burst done", timeout=90)
    await _succeeded_once(cluster, job_ids)
    assert most >= 2

    async def back_to_zero() -> bool:
        body = await cluster.actor("elastic")
        active = [r for r in body["replicas"] if r["status"] != "terminated"]
        return body["desired_replicas"] == 0 and not active

    await wait_until(back_to_zero, what="zero replicas after the cooldown", timeout=30)
    kinds = [e["kind"] for e in (await cluster.actor("elastic"))["events"]]
    assert kinds.index("activate") < kinds.index("scale_up") < kinds.index("scale_to_zero")


async def test_a_changed_spec_replaces_the_replicas_and_loses_no_envelope(
    cluster: Cluster,
) -> None:
    await cluster.add_agent("node-1")
    client = cluster.manager.client()
    spec = {
        "handler": "examples.pipeline:double",
        "pythonpath": [EXAMPLES_ROOT],
        "concurrency": 4,
        "scaling": {"min_replicas": 2},
    }
    assert (await client.put("/v1/actors/rolling", spec)).status == 201
    old = await cluster.running_replicas("rolling", 2)
    job_ids: list[str] = []

    async def publish_for(seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        i = 0
        while asyncio.get_running_loop().time() < deadline:
            job_ids.extend(await cluster.publish_jobs("rolling", [{"value": i}]))
            i += 1
            await asyncio.sleep(0.01)  # a steady trickle of work across the replacement

    publishing = asyncio.create_task(publish_for(6))
    changed = await client.put("/v1/actors/rolling", {**spec, "env": {"VERSION": "2"}})
    assert (changed.status, changed.body["generation"]) == (200, 2)
    new = await cluster.running_replicas("rolling", 2, generation=2)
    await publishing
    await _succeeded_once(cluster, job_ids)
    assert not {r["id"] for r in new} & {r["id"] for r in old}

    async def old_gone() -> bool:
        replicas = (await cluster.actor("rolling"))["replicas"]
        return all(r["generation"] == 2 for r in replicas)

    await wait_until(old_gone, what="the first generation drained")


async def test_models_announced_by_a_runtime_are_registered(cluster: Cluster) -> None:
    await cluster.add_agent("node-1")
    client = cluster.manager.client()
    spec = {"handler": "examples.models:app", "pythonpath": [EXAMPLES_ROOT]}
    assert (await client.put("/v1/actors/scaler", spec)).status == 201
    await cluster.running_replicas("scaler", 1)

    async def registered() -> list[dict[str, object]] | None:
        items: list[dict[str, object]] = (await client.get("/v1/models")).body["items"]
        return items or None

    items = await wait_until(registered, what="the models registered")
    assert [(m["name"], m["version"], m["actor_name"]) for m in items] == [
        ("scaler", "1", "scaler"),
        ("scaler", "2", "scaler"),
    ]
    one = await client.get("/v1/models/scaler")
    assert [v["version"] for v in one.body["versions"]] == ["1", "2"]
    assert one.body["versions"][0]["metadata"]["inputs"] == [
        {"name": "values", "datatype": "FP32", "shape": [-1]}
    ]
