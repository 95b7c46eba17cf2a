"""Failures the control plane repairs: a stuck handler, a lost agent; and a drain on delete.
Every job still ends exactly once (counted after the streams are quiet)."""

from __future__ import annotations

import os

import examples.failures  # noqa: F401  (the replicas' handlers: Pants packs them with this)
import examples.pipeline  # noqa: F401

from ai.backend.testutils.control_plane import Cluster, wait_until

EXAMPLES_ROOT = os.getcwd()


async def test_a_runtime_stuck_in_a_sync_handler_is_restarted(cluster: Cluster) -> None:
    await cluster.add_agent("node-1")
    spec = {
        "handler": "examples.failures:stuck",
        "pythonpath": [EXAMPLES_ROOT],
        "timeout": "1s",
        "concurrency": 1,
    }
    assert (await cluster.manager.client().put("/v1/actors/sticky", spec)).status == 201
    [replica] = await cluster.running_replicas("sticky", 1)
    [stuck] = await cluster.publish_jobs("sticky", [{"seconds": 600}])
    ends = await cluster.ends_once([stuck])
    assert (ends[stuck]["kind"], ends[stuck]["error"]["code"]) == ("failed", "timeout")

    async def restarted() -> bool:
        replicas = (await cluster.actor("sticky"))["replicas"]
        return [(r["id"], r["status"], r["restarts"]) for r in replicas] == [
            (replica["id"], "running", 1)  # the same replica, with a fresh runtime
        ]

    await wait_until(restarted, what="the stuck runtime restarted", timeout=30)
    # the fresh runtime's thread is free: the next call runs at once
    [quick] = await cluster.publish_jobs("sticky", [{"seconds": 0}])
    ends = await cluster.ends_once([quick])
    assert (ends[quick]["kind"], ends[quick]["result"]) == ("succeeded", {"seconds": 0})


async def test_a_lost_agents_replicas_come_back_elsewhere_and_finish_its_work(
    cluster: Cluster,
) -> None:
    await cluster.add_agent("node-a")
    client = cluster.manager.client()
    spec = {
        "handler": "examples.pipeline:double_slowly",
        "pythonpath": [EXAMPLES_ROOT],
        "concurrency": 2,
        "scaling": {"min_replicas": 2},
    }
    assert (await client.put("/v1/actors/worker", spec)).status == 201
    first = await cluster.running_replicas("worker", 2)
    assert {r["agent_id"] for r in first} == {"node-a"}
    job_ids = await cluster.publish_jobs("worker", [{"value": i} for i in range(30)])

    async def some_done() -> bool:
        return any(e["kind"] == "succeeded" for e in await cluster.plane.events())

    await wait_until(some_done, what="the first jobs done")
    cluster.stop_agent_and_replicas("node-a")  # kill -9: work in flight stays pending
    await cluster.add_agent("node-b")
    ends = await cluster.ends_once(job_ids, timeout=90)
    assert {e["kind"] for e in ends.values()} == {"succeeded"}
    assert sorted(e["result"]["value"] for e in ends.values()) == [2 * i for i in range(30)]
    replicas = (await cluster.actor("worker"))["replicas"]
    assert sorted((r["agent_id"], r["status"]) for r in replicas) == [
        ("node-a", "lost"),
        ("node-a", "lost"),
        ("node-b", "running"),
        ("node-b", "running"),
    ]
    agent = (await client.get("/v1/agents/node-a")).body
    assert agent["status"] == "lost"


async def test_delete_lets_in_flight_work_finish_then_removes_the_actor(cluster: Cluster) -> None:
    await cluster.add_agent("node-1")
    client = cluster.manager.client()
    spec = {"handler": "examples.failures:stuck", "pythonpath": [EXAMPLES_ROOT], "timeout": "30s"}
    assert (await client.put("/v1/actors/finisher", spec)).status == 201
    await cluster.running_replicas("finisher", 1)
    [job_id] = await cluster.publish_jobs("finisher", [{"seconds": 2}])

    async def started() -> bool:
        return any(e["kind"] == "progress" for e in await cluster.plane.events(job_id))

    await wait_until(started, what="the job started")
    assert (await client.delete("/v1/actors/finisher")).status == 202
    ends = await cluster.ends_once([job_id])
    assert (ends[job_id]["kind"], ends[job_id]["result"]) == ("succeeded", {"seconds": 2})

    async def gone() -> bool:
        return (await client.get("/v1/actors/finisher")).status == 404

    await wait_until(gone, what="the actor removed after its drain")
