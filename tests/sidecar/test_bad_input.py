"""Bad input at the sidecar: whatever the runtime or a stream holds, the sidecar keeps serving.
Stream entries that are not envelopes end in the actor's DLQ, never in a crash or a loop."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai.backend.sidecar.clients.runtime import (
    InvalidHello,
    RuntimeClient,
    RuntimeHello,
    _PendingCall,
)
from ai.backend.testutils.dataplane import DataPlane

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["hello", "result", "partial", "progress", "error", "pong"])
        | json_values,
        "id": st.just("call-1") | json_values,
        "status": st.sampled_from(["ok", "error"]) | json_values,
        "result": json_values,
        "error": json_values,
        "concurrency": json_values,
        "models": json_values,
        "pid": json_values,
    },
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(frames)
def test_any_first_frame_is_a_hello_or_invalid_hello(frame: dict[str, Any]) -> None:
    try:
        hello = RuntimeHello.from_frame(frame)
    except InvalidHello as e:
        assert str(e)
    else:
        assert frame["type"] == "hello"
        assert isinstance(hello.concurrency, int) and hello.concurrency >= 1
        assert all(isinstance(m, dict) for m in hello.models)


async def feed(body: bytes) -> dict[str, Any] | None:
    """Hand ``body`` to a client with one call in flight; the call's answer if it got one."""
    client = RuntimeClient(Path("/nonexistent.sock"))
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    client._pending["call-1"] = _PendingCall(future, lambda frame: None)  # a call in flight
    client._on_body(body)
    return future.result() if future.done() else None


@FAST
@given(st.binary(max_size=512) | frames.map(lambda f: json.dumps(f).encode()))
def test_no_frame_body_breaks_the_connection_task(body: bytes) -> None:
    answer = asyncio.run(feed(body))
    if answer is not None:
        assert answer["id"] == "call-1"
        assert answer["type"] == "result"


async def test_random_stream_entries_end_in_the_dlq_and_serving_goes_on(
    plane: DataPlane,
) -> None:
    await plane.start_actor("doubler", "examples.pipeline:double")
    rng = random.Random(8)
    junk: list[bytes] = [rng.randbytes(rng.randrange(0, 300)) for _ in range(30)]
    collected: list[bytes] = []

    @settings(max_examples=30, derandomize=True, database=None)
    @given(json_values)
    def collect(value: Any) -> None:
        collected.append(json.dumps(value).encode())

    collect()
    junk += collected
    stream = plane.keys.actor_stream("doubler")
    for body in junk:
        await plane.redis.xadd(stream, {"e": body})
    await plane.redis.xadd(stream, {"other": b"no e field"})
    await plane.publish(["doubler"], {"value": 21}, job_id="after-junk")
    assert (await plane.wait_terminal("after-junk"))["result"] == {"value": 42}
    await plane.wait_quiescent()
    letters = await plane.dead_letter_entries("doubler")
    assert [body for body, _error in letters] == [*junk, b""]
    assert {error["code"] for _body, error in letters} == {"invalid_json"}
    assert await plane.dead_letters("error-end") == []
