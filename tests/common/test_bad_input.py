"""Property tests: whatever bytes arrive, the frame decoder and the envelope parser answer with
a value or a clear error of their own, never a crash."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai.backend.common.dto.envelope import Envelope, Route
from ai.backend.common.framing import (
    HEADER,
    FrameError,
    FrameTooLarge,
    IncompleteFrame,
    InvalidFrame,
    decode_body,
    read_frame,
)
from ai.backend.common.transport.base import Delivery
from ai.backend.sidecar.services.processor import bad_envelope_outcome, parse_envelope

# JSON as the codec carries it: integers within 64 bits (orjson's range), finite floats
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
# objects that look like envelopes: the right keys, any values
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "v": json_values,
        "id": json_values,
        "job_id": json_values,
        "route": json_values | st.fixed_dictionaries({"actors": json_values}),
        "payload": json_values,
        "headers": json_values,
        "attempt": json_values,
        "deadline_at": json_values,
        "branch": json_values,
        "error": json_values,
    },
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


async def read_all_frames(data: bytes, max_frame: int) -> list[dict[str, Any]]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while (frame := await read_frame(reader, max_frame=max_frame)) is not None:
        frames.append(frame)
    return frames


@FAST
@given(st.binary(max_size=2048))
def test_decode_body_answers_any_bytes_with_an_object_or_invalid_frame(body: bytes) -> None:
    try:
        frame = decode_body(body)
    except InvalidFrame as e:
        assert e.code == "invalid_json"
        assert str(e).startswith("frame body ")
    else:
        assert isinstance(frame, dict)


@FAST
@given(st.binary(max_size=4096), st.integers(min_value=1, max_value=4096))
def test_reading_frames_from_any_bytes_ends_in_frames_or_a_frame_error(
    data: bytes, max_frame: int
) -> None:
    try:
        frames = asyncio.run(read_all_frames(data, max_frame))
    except FrameTooLarge as e:
        assert e.limit == max_frame and e.size > max_frame
    except (IncompleteFrame, InvalidFrame) as e:
        assert isinstance(e, FrameError) and str(e)
    else:
        assert all(isinstance(f, dict) for f in frames)


@FAST
@given(st.lists(st.dictionaries(st.text(), json_values, max_size=4), max_size=5))
def test_well_formed_frames_read_back_exactly(messages: list[dict[str, Any]]) -> None:
    data = b"".join(
        HEADER.pack(len(body)) + body for body in (json.dumps(m).encode() for m in messages)
    )
    assert asyncio.run(read_all_frames(data, 1 << 20)) == messages


def assert_parsed_or_refused(body: bytes) -> None:
    delivery = Delivery("doubler", "1-0", body)
    envelope, problem = parse_envelope(delivery)
    if envelope is not None:
        assert problem == ""
        assert Envelope.from_json_bytes(envelope.to_json_bytes()) == envelope
        return
    assert problem
    outcome = bad_envelope_outcome(delivery, problem)
    [letter] = outcome.dead_letters
    assert (letter.queue, letter.body) == ("doubler", body)
    assert letter.error == {"code": "invalid_json", "message": f"not a valid envelope: {problem}"}
    assert outcome.acks == [delivery] and outcome.publish == []


@FAST
@given(st.binary(max_size=2048))
def test_any_bytes_are_an_envelope_or_a_dead_letter(body: bytes) -> None:
    assert_parsed_or_refused(body)


@FAST
@given(json_values | envelope_like)
def test_any_json_is_an_envelope_or_a_dead_letter(value: Any) -> None:
    assert_parsed_or_refused(json.dumps(value).encode())


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    assert_parsed_or_refused(b"[" * 100_000 + b"]" * 100_000)
    payload = {"v": 1, "route": Route(actors=["a"]).model_dump(), "payload": None}
    nested = json.dumps(payload).replace("null", "[" * 5_000 + "]" * 5_000)
    assert_parsed_or_refused(nested.encode())
