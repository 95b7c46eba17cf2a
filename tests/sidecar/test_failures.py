"""The error path: failures, retries, the DLQ, timeouts and deadlines."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import examples.probes  # noqa: F401  (handlers the children load)
import pytest

from ai.backend.common.dto.envelope import Envelope, Route
from ai.backend.testutils.dataplane import DataPlane

FAST_RETRY = {"base": "100ms", "max": "200ms"}


def error_of(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event["error"].items() if k != "traceback"}


async def test_value_error_fails_once_with_details_and_no_dlq(plane: DataPlane) -> None:
    await plane.start_actor("failing", "examples.failures:fail_value_error")
    await plane.publish(["failing"], {"value": 1}, job_id="bad")
    terminal = await plane.wait_terminal("bad")
    assert terminal["kind"] == "failed"
    assert terminal["actor"] == "error-end"
    assert terminal["attempt"] == 1
    assert error_of(terminal) == {
        "code": "processing_error",
        "type": "ValueError",
        "message": "bad value: {'value': 1}",
        "reason": "processing_error",
        "actor": "failing",
        "attempt": 1,
    }
    assert terminal["error"]["traceback"].rstrip().endswith("ValueError: bad value: {'value': 1}")
    assert await plane.dead_letters("failing") == []
    await plane.wait_quiescent()
    assert len(await plane.terminal_events("bad")) == 1


async def test_non_retryable_class_is_not_retried(plane: DataPlane) -> None:
    spec = {"retry": {"max_attempts": 3, "non_retryable": ["ValueError"], **FAST_RETRY}}
    await plane.start_actor("strict", "examples.failures:fail_not_retryable", spec=spec)
    await plane.publish(["strict"], {"n": 1}, job_id="nr")
    terminal = await plane.wait_terminal("nr")
    # NotRetryableError subclasses ValueError: matched along the MRO
    assert error_of(terminal) == {
        "code": "processing_error",
        "type": "NotRetryableError",
        "message": "never retried",
        "reason": "non_retryable",
        "actor": "strict",
        "attempt": 1,
    }
    assert await plane.dead_letters("strict") == []


async def test_exhausted_retries_go_to_the_dlq_with_the_original_payload(
    plane: DataPlane,
) -> None:
    spec = {"retry": {"max_attempts": 3, "non_retryable": ["ValueError"], **FAST_RETRY}}
    await plane.start_actor("doomed", "examples.failures:fail_runtime_error", spec=spec)
    envelope = await plane.publish(["doomed"], {"keep": "me"}, job_id="ex")
    terminal = await plane.wait_terminal("ex")
    assert error_of(terminal) == {
        "code": "processing_error",
        "type": "RuntimeError",
        "message": "always fails",
        "reason": "max_retries",
        "actor": "doomed",
        "attempt": 3,
    }
    attempts = [e["attempt"] for e in await plane.events("ex") if e["kind"] == "running"]
    assert attempts == [1, 2, 3]
    [letter] = await plane.dead_letters("doomed")
    assert letter["envelope"]["id"] == envelope.id
    assert letter["envelope"]["payload"] == {"keep": "me"}
    assert letter["envelope"]["attempt"] == 3
    assert letter["error"]["type"] == "RuntimeError"
    assert letter["error"]["reason"] == "max_retries"


async def test_flaky_handler_succeeds_at_attempt_two(plane: DataPlane) -> None:
    spec = {"retry": {"max_attempts": 2, **FAST_RETRY}}
    await plane.start_actor("flaky", "examples.failures:flaky", spec=spec)
    await plane.start_actor("doubler", "examples.pipeline:double")
    await plane.publish(["flaky", "doubler"], {"value": 3}, job_id="fl")
    terminal = await plane.wait_terminal("fl")
    assert (terminal["kind"], terminal["result"]) == ("succeeded", {"value": 6, "attempt": 2})
    running = [
        (e["actor"], e["attempt"]) for e in await plane.events("fl") if e["kind"] == "running"
    ]
    # the attempt counter starts again at the next actor
    assert running == [("flaky", 1), ("flaky", 2), ("doubler", 1)]
    assert await plane.dead_letters("flaky") == []


async def test_expired_deadline_fails_without_running_the_handler(plane: DataPlane) -> None:
    await plane.start_actor("doubler", "examples.pipeline:double")
    past = datetime.now(UTC) - timedelta(seconds=1)
    await plane.publish(["doubler"], {"value": 1}, job_id="late", deadline_at=past)
    terminal = await plane.wait_terminal("late")
    assert error_of(terminal)["code"] == "timeout"
    assert error_of(terminal)["reason"] == "timeout"
    assert [e for e in await plane.events("late") if e["kind"] == "running"] == []


@pytest.mark.parametrize("handler", ["examples.failures:slow", "examples.failures:async_slow"])
async def test_call_timeout_fails_and_never_also_succeeds(plane: DataPlane, handler: str) -> None:
    await plane.start_actor("sleepy", handler, spec={"timeout": "1s"})
    started = time.monotonic()
    await plane.publish(["sleepy"], {"seconds": 60}, job_id="slow")
    terminal = await plane.wait_terminal("slow", timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed < 1 + 2, f"failed after {elapsed:.1f} s"
    assert error_of(terminal) == {
        "code": "timeout",
        "message": "the call did not finish within 1 s",
        "reason": "timeout",
        "actor": "sleepy",
        "attempt": 1,
    }
    await plane.wait_quiescent()
    assert [e["kind"] for e in await plane.terminal_events("slow")] == ["failed"]


@pytest.mark.parametrize(
    "handler", ["examples.failures:blocks_the_loop", "examples.failures:ignores_cancellation"]
)
async def test_an_answer_after_the_timeout_is_a_timeout(plane: DataPlane, handler: str) -> None:
    await plane.start_actor("stubborn", handler, spec={"timeout": "500ms"})
    await plane.publish(["stubborn"], {"seconds": 1.5}, job_id="stubborn")
    terminal = await plane.wait_terminal("stubborn", timeout=10)
    assert (terminal["kind"], error_of(terminal)["code"]) == ("failed", "timeout")
    await plane.wait_quiescent()
    assert [e["kind"] for e in await plane.terminal_events("stubborn")] == ["failed"]


async def test_a_handler_cancelled_under_it_fails_as_a_cancelled_call(plane: DataPlane) -> None:
    await plane.start_actor("cancelled", "examples.failures:raises_cancelled")
    await plane.publish(["cancelled"], {"value": 1}, job_id="cancelled")
    error = error_of(await plane.wait_terminal("cancelled"))
    assert (error["code"], error["message"], error["attempt"]) == (
        "timeout",
        "the call was cancelled",
        1,
    )


async def test_route_mismatch_is_never_processed(plane: DataPlane) -> None:
    await plane.start_actor("doubler", "examples.pipeline:double")
    envelope = Envelope(route=Route(actors=["other"]), payload={"value": 1}, job_id="mm")
    await plane.redis.xadd(plane.keys.actor_stream("doubler"), {"e": envelope.to_json_bytes()})
    terminal = await plane.wait_terminal("mm")
    assert error_of(terminal) == {
        "code": "route_mismatch",
        "message": "envelope is for 'other', this is 'doubler'",
        "reason": "route_mismatch",
        "actor": "doubler",
        "attempt": 1,
    }
    assert [e for e in await plane.events("mm") if e["kind"] == "running"] == []


async def test_a_message_that_is_not_an_envelope_goes_to_the_dlq(plane: DataPlane) -> None:
    await plane.start_actor("doubler", "examples.pipeline:double")
    await plane.redis.xadd(plane.keys.actor_stream("doubler"), {"e": b'{"v": 1, "route": 3'})
    await plane.publish(["doubler"], {"value": 2}, job_id="after")
    assert (await plane.wait_terminal("after"))["result"] == {"value": 4}
    entries: Any = await plane.redis.xrange(plane.keys.dead_letters("doubler"))
    [(_id, fields)] = entries
    assert fields[b"e"] == b'{"v": 1, "route": 3'
    assert b"not a valid envelope" in fields[b"err"]


async def test_oversized_call_frame_fails_without_retry(plane: DataPlane) -> None:
    spec = {"retry": {"max_attempts": 3, **FAST_RETRY}}
    await plane.start_actor(
        "echo", "examples.pipeline:echo", spec=spec, sidecar={"max_frame": "1k"}
    )
    await plane.publish(["echo"], {"blob": "x" * 4096}, job_id="big")
    terminal = await plane.wait_terminal("big")
    assert (error_of(terminal)["code"], error_of(terminal)["attempt"]) == ("frame_too_large", 1)
    await plane.publish(["echo"], {"small": 1}, job_id="small")
    assert (await plane.wait_terminal("small"))["result"] == {"small": 1}


@pytest.mark.parametrize(
    ("handler", "code"),
    [("examples.failures:oom", "oom_error"), ("examples.failures:cuda_oom", "cuda_oom_error")],
)
async def test_out_of_memory_is_retried_after_retry_after(
    plane: DataPlane, handler: str, code: str
) -> None:
    await plane.start_actor("hungry", handler)
    await plane.publish(["hungry"], None, job_id="oom")
    await plane.wait_for(
        lambda: _count_running(plane, "oom", 1), what="the first attempt", timeout=10
    )
    scheduled: Any = await plane.redis.zrange(plane.keys.retry, 0, -1, withscores=True)
    [(_member, due_at)] = scheduled
    # recoverable: a retry is scheduled no sooner than the runtime's retry_after
    assert due_at - time.time() > (30 if code == "oom_error" else 60) - 5
    assert await plane.terminal_events("oom") == []


async def _count_running(plane: DataPlane, job_id: str, count: int) -> bool:
    running = [e for e in await plane.events(job_id) if e["kind"] == "running"]
    retries = await plane.redis.zcard(plane.keys.retry)
    return len(running) == count and retries == 1


async def test_an_answer_that_is_not_json_fails_the_call(plane: DataPlane) -> None:
    await plane.start_actor("setter", "examples.failures:not_json", spec={"retry": FAST_RETRY})
    await plane.publish(["setter"], {"value": 1}, job_id="set")
    error = error_of(await plane.wait_terminal("set"))
    assert (error["code"], error["attempt"]) == ("processing_error", 1)
    assert error["message"].startswith("the handler's output is not JSON-serializable")


async def test_an_answer_above_max_frame_fails_with_frame_too_large(plane: DataPlane) -> None:
    await plane.start_actor("grower", "examples.failures:grow", sidecar={"max_frame": "1k"})
    await plane.publish(["grower"], {"size": 4096}, job_id="huge")
    assert error_of(await plane.wait_terminal("huge"))["code"] == "frame_too_large"
    await plane.publish(["grower"], {"size": 10}, job_id="fits")
    assert (await plane.wait_terminal("fits"))["result"] == {"blob": "x" * 10}


async def test_a_handler_changing_its_payload_in_place_does_not_change_the_envelope(
    plane: DataPlane,
) -> None:
    await plane.start_actor("mutator", "examples.probes:mutate_then_finish")
    await plane.publish(["mutator"], {"value": 1}, job_id="mut")
    assert (await plane.wait_terminal("mut"))["result"] == {"value": 1}
