"""Exactly one terminal event per job when envelopes arrive twice, when a job is cancelled while
a branch is past the cancel check, and when a poison message keeps failing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import examples.failures  # noqa: F401  (handlers the children load)
import examples.probes  # noqa: F401

from ai.backend.common.dto.envelope import Envelope, Route, child_envelope_id
from ai.backend.testutils.dataplane import DataPlane

FAN_OUT = ["splitter", "doubler"]


async def running(plane: DataPlane, job_id: str, actor: str | None = None) -> list[int]:
    """The attempts of the job's ``running`` events (at ``actor``)."""
    return [
        e["attempt"]
        for e in await plane.events(job_id)
        if e["kind"] == "running" and actor in (None, e["actor"])
    ]


async def test_a_fan_out_parent_published_twice_ends_its_job_once(plane: DataPlane) -> None:
    await plane.start_actor("splitter", "examples.pipeline:fan_out")
    await plane.start_actor("doubler", "examples.pipeline:double", spec={"concurrency": 3})
    parent = Envelope(route=Route(actors=FAN_OUT), payload={"items": [1, 2, 3]}, job_id="twice")
    await plane.publish_envelope(parent)
    await plane.publish_envelope(parent)
    terminal = await plane.wait_terminal("twice")
    assert (terminal["kind"], terminal["result"], terminal["data"]) == (
        "succeeded",
        {"results": [{"value": 2}, {"value": 4}, {"value": 6}]},
        {"branches": 3},
    )
    await plane.wait_quiescent()
    assert len(await plane.terminal_events("twice")) == 1
    assert await running(plane, "twice", "splitter") == [1, 1]
    # both fan-outs made the same children: ids derived from the parent's and the index
    child_ids = {e["envelope_id"] for e in await plane.events("twice") if e["actor"] == "doubler"}
    assert child_ids == {child_envelope_id(parent.id, i) for i in range(3)}


async def test_the_same_final_envelope_at_both_crew_actors_ends_the_job_once(
    plane: DataPlane,
) -> None:
    final = Envelope(
        route=Route(actors=["doubler", "happy-end"], current=1), payload={"v": 1}, job_id="both"
    )
    failed = final.model_copy(
        update={
            "route": Route(actors=["doubler", "error-end"], current=1),
            "error": {"code": "processing_error", "message": "the other duplicate failed"},
        }
    )
    await plane.publish_envelope(final)
    await plane.publish_envelope(failed)
    await plane.publish_envelope(final)
    await plane.wait_terminal("both")
    await plane.wait_quiescent()
    terminals = await plane.terminal_events("both")
    assert len(terminals) == 1
    assert terminals[0]["kind"] in ("succeeded", "failed")  # whichever crew member came first


async def test_a_branch_past_the_cancel_check_cannot_end_a_cancelled_job(
    plane: DataPlane,
) -> None:
    await plane.start_actor("sleepy", "examples.failures:slow")
    await plane.publish(["sleepy"], {"seconds": 1}, job_id="late")
    await plane.wait_for(lambda: _has_running(plane, "late"), what="the call to start")
    assert (await plane.cancel("late", "user asked")).ended
    await plane.wait_quiescent()  # the call finished and its branch reached happy-end
    assert [(e["kind"], e.get("data")) for e in await plane.terminal_events("late")] == [
        ("cancelled", {"reason": "user asked"})
    ]
    assert await running(plane, "late") == [1]


async def _has_running(plane: DataPlane, job_id: str) -> bool:
    return bool(await running(plane, job_id))


async def test_a_job_cancelled_after_it_succeeded_stays_succeeded(plane: DataPlane) -> None:
    await plane.start_actor("doubler", "examples.pipeline:double")
    await plane.publish(["doubler"], {"value": 2}, job_id="done")
    await plane.wait_terminal("done")
    result = await plane.cancel("done")
    assert (result.ended, result.ended_as) == (False, "succeeded")
    assert [e["kind"] for e in await plane.terminal_events("done")] == ["succeeded"]


async def test_a_message_whose_commit_always_fails_fails_its_job_after_five_deliveries(
    plane: DataPlane,
) -> None:
    # the job's state key has the wrong type: every write of the fan-out fails in Redis
    await plane.redis.set(plane.keys.job_state("poison"), b"not a hash")
    fast_reclaim = {"claim_idle": "500ms"}
    await plane.start_actor("splitter", "examples.pipeline:fan_out", sidecar=fast_reclaim)
    await plane.publish(["splitter"], {"items": [1, 2]}, job_id="poison")
    terminal = await plane.wait_terminal("poison", timeout=30)
    error = {
        "code": "processing_error",
        "message": "delivered 6 times without an outcome (retry.max_deliveries is 5)",
        "reason": "delivery_limit",
        "actor": "splitter",
        "attempt": 1,
    }
    assert (terminal["kind"], terminal["actor"], terminal["error"]) == ("failed", "splitter", error)
    await plane.wait_quiescent()
    [letter] = await plane.dead_letters("splitter")
    assert letter["error"] == error
    # the handler ran once per delivery, five times, and never again
    assert await running(plane, "poison") == [1, 1, 1, 1, 1]
    assert len(await plane.terminal_events("poison")) == 1
    # the sidecar is alive and serves the next job
    await plane.publish(["splitter"], {"items": [7]}, job_id="after")
    assert (await plane.wait_terminal("after"))["result"] == {"results": [{"value": 7}]}


async def test_an_envelope_that_cannot_be_routed_fails_its_job(plane: DataPlane) -> None:
    await plane.start_actor("splitter", "examples.pipeline:fan_out")
    deepest = Envelope(
        route=Route(actors=["splitter"]),
        payload={"items": [1]},
        job_id="deep",
        parent_id="above",
        branch=[0] * 32,
    )
    await plane.publish_envelope(deepest)
    terminal = await plane.wait_terminal("deep")
    assert (terminal["kind"], terminal["error"]["reason"], terminal["error"]["message"]) == (
        "failed",
        "unroutable",
        "fan-outs nest at most 32 deep",
    )
    await plane.wait_quiescent()
    assert len(await plane.terminal_events("deep")) == 1
    assert [letter["error"]["reason"] for letter in await plane.dead_letters("splitter")] == [
        "unroutable"
    ]


async def test_a_job_failed_by_a_sidecar_is_skipped_until_its_deadline_has_passed(
    plane: DataPlane,
) -> None:
    await plane.start_actor("splitter", "examples.pipeline:fan_out")
    deadline_in = 30.0
    deepest = Envelope(
        route=Route(actors=["splitter"]),
        payload={"items": [1]},
        job_id="deep-deadline",
        parent_id="above",
        branch=[0] * 32,
        deadline_at=datetime.now(UTC) + timedelta(seconds=deadline_in),
    )
    await plane.publish_envelope(deepest)
    assert (await plane.wait_terminal("deep-deadline"))["error"]["reason"] == "unroutable"
    forget_at = await plane.redis.zscore(plane.keys.cancel, "deep-deadline")
    assert forget_at is not None
    # the deadline plus the margin (60 s), not the default of a day
    assert deadline_in + 60 - 15 <= forget_at - time.time() <= deadline_in + 60 + 1


async def test_reclaimed_and_new_entries_never_exceed_the_concurrency(plane: DataPlane) -> None:
    plane.start_runtime_unless_inprocess(
        "probe", "examples.probes:concurrency_probe", "--concurrency", "8"
    )
    stream = plane.keys.actor_stream("probe")
    await plane.redis.xgroup_create(stream, "probe", id="0", mkstream=True)
    for i in range(2):
        await plane.publish(["probe"], {"seconds": 0.5}, job_id=f"orphan-{i}")
    # a replica took two entries and died: they wait to be reclaimed
    await plane.redis.xreadgroup("probe", "dead-replica", {stream: ">"}, count=2)
    spec = {"name": "probe", "handler": "examples.probes:concurrency_probe", "concurrency": 2}
    await plane.start_sidecar("probe", spec=spec, sidecar={"claim_idle": "300ms"})
    for i in range(4):
        await plane.publish(["probe"], {"seconds": 0.5}, job_id=f"new-{i}")
    jobs = [f"orphan-{i}" for i in range(2)] + [f"new-{i}" for i in range(4)]
    most: list[Any] = [(await plane.wait_terminal(job))["result"]["most_at_once"] for job in jobs]
    assert max(most) == 2
