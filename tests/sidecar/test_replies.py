"""Request-reply: an envelope with ``reply-to`` and ``events: off`` is answered on the gateway's
reply stream by the sidecar where its route ends, and makes no job events (nor ends a job, even
when it cannot be routed)."""

from __future__ import annotations

from typing import Any

import examples.kserve_echo  # noqa: F401  (the handler the children load)
import orjson

from ai.backend.common.dto.envelope import (
    EVENTS_HEADER,
    EVENTS_OFF,
    REPLY_TO_HEADER,
    Envelope,
    ModelRef,
    Route,
)
from ai.backend.testutils.dataplane import DataPlane

REPLY_HEADERS = {REPLY_TO_HEADER: "gw-1", EVENTS_HEADER: EVENTS_OFF}


async def replies(plane: DataPlane, count: int) -> list[dict[str, Any]]:
    """The first ``count`` replies on gateway ``gw-1``'s stream (waiting for them)."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        entries: Any = await plane.redis.xrange(plane.keys.reply("gw-1"))
        found[:] = [orjson.loads(fields[b"ev"]) for _id, fields in entries]
        return len(found) >= count

    await plane.wait_for(arrived, what=f"{count} replies")
    return found


async def test_a_model_call_is_answered_on_the_reply_stream_without_events(
    plane: DataPlane,
) -> None:
    await plane.start_actor("echo", "examples.kserve_echo:app")
    request = {
        "id": "r1",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.5, 2]}],
    }
    envelope = await plane.publish(
        ["echo"], request, headers=REPLY_HEADERS, model=ModelRef(name="echo", version="1")
    )
    [reply] = await replies(plane, 1)
    assert reply["job_id"] == envelope.id
    assert (reply["kind"], reply["actor"]) == ("succeeded", "echo")
    assert reply["result"] == {
        "id": "r1",
        "outputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.5, 2]}],
    }
    await plane.wait_quiescent()
    assert await plane.events() == []
    assert not await plane.redis.exists(plane.keys.actor_stream("happy-end")) or not (
        await plane.redis.xlen(plane.keys.actor_stream("happy-end"))
    )


async def test_binary_tensors_travel_as_base64_through_the_model(plane: DataPlane) -> None:
    await plane.start_actor("echo", "examples.kserve_echo:app")
    raw = "ADwAQA=="  # FP16 [1.0, 2.0]
    request = {"inputs": [{"name": "h", "datatype": "FP16", "shape": [2], "data_b64": raw}]}
    await plane.publish(["echo"], request, headers=REPLY_HEADERS, model=ModelRef(name="echo"))
    [reply] = await replies(plane, 1)
    assert reply["result"]["outputs"] == [
        {"name": "h", "datatype": "FP16", "shape": [2], "data_b64": raw}
    ]


async def test_a_failed_call_is_answered_with_its_error(plane: DataPlane) -> None:
    await plane.start_actor("failing", "examples.failures:fail_not_retryable")
    envelope = await plane.publish(["failing"], {}, headers=REPLY_HEADERS)
    [reply] = await replies(plane, 1)
    assert (reply["job_id"], reply["kind"]) == (envelope.id, "failed")
    assert reply["error"]["message"] == "never retried"
    assert reply["error"]["type"] == "NotRetryableError"
    await plane.wait_quiescent()
    assert await plane.events() == []


async def test_an_unknown_model_is_a_failed_reply(plane: DataPlane) -> None:
    await plane.start_actor("echo", "examples.kserve_echo:app")
    await plane.publish(
        ["echo"], {"inputs": []}, headers=REPLY_HEADERS, model=ModelRef(name="nope")
    )
    [reply] = await replies(plane, 1)
    assert reply["kind"] == "failed"
    assert reply["error"]["message"] == "no model nope in this app"


async def test_a_tracked_job_is_answered_by_the_crew_at_its_end(plane: DataPlane) -> None:
    await plane.start_actor("doubler", "examples.pipeline:double")
    headers = {REPLY_TO_HEADER: "gw-1"}  # events stay on: a job of record
    await plane.publish_envelope(
        Envelope(
            route=Route(actors=["doubler"]), payload={"value": 2}, job_id="j1", headers=headers
        )
    )
    terminal = await plane.wait_terminal("j1")
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"value": 4})
    [reply] = await replies(plane, 1)
    assert reply == terminal


async def test_a_fan_out_is_answered_once_with_every_branch(plane: DataPlane) -> None:
    await plane.start_actor("fan", "examples.pipeline:fan_out")
    await plane.start_actor("doubler", "examples.pipeline:double")
    envelope = await plane.publish(["fan", "doubler"], {"items": [1, 2, 3]}, headers=REPLY_HEADERS)
    await plane.wait_quiescent()
    [reply] = await replies(plane, 1)
    assert (reply["job_id"], reply["kind"]) == (envelope.id, "succeeded")
    assert reply["result"] == {"results": [{"value": 2}, {"value": 4}, {"value": 6}]}


async def test_an_untracked_envelope_that_cannot_be_routed_is_answered_and_ends_no_job(
    plane: DataPlane,
) -> None:
    await plane.start_actor("fan", "examples.pipeline:fan_out")
    deepest = Envelope(
        route=Route(actors=["fan"]),
        payload={"items": [1]},
        parent_id="above",
        branch=[0] * 32,
        headers=REPLY_HEADERS,
    )
    await plane.publish_envelope(deepest)
    [reply] = await replies(plane, 1)
    assert (reply["job_id"], reply["kind"]) == (deepest.id, "failed")
    assert reply["error"]["reason"] == "unroutable"
    await plane.wait_quiescent()
    assert [letter["error"]["reason"] for letter in await plane.dead_letters("fan")] == [
        "unroutable"
    ]
    # no job of record: no terminal event, no end guard, nothing in the skip set
    assert await plane.events() == []
    assert not await plane.redis.exists(plane.keys.job_end(deepest.id))
    assert await plane.redis.zscore(plane.keys.cancel, deepest.id) is None
