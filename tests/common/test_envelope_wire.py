"""The hot path's envelope codec (msgspec) and the public DTO (Pydantic) are interchangeable:
the same JSON for the same envelope, each reads what the other writes, and for any input both
accept the same envelopes and refuse the same ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ai.backend.common import json as wire_json
from ai.backend.common.dto.envelope import Envelope, ModelRef, Route
from ai.backend.common.dto.envelope_wire import WireEnvelope, WireRoute, decode_envelope
from ai.backend.common.framing import encode_frame

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)
ids = st.text(st.characters(codec="utf-8", categories=["L", "N", "P"]), min_size=1, max_size=64)
names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
aware_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5, minutes=-30))]
    ),
)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    actors = draw(st.lists(names, min_size=1, max_size=5))
    branch = draw(st.lists(st.integers(0, 10**6), max_size=4))
    return Envelope(
        id=draw(ids),
        job_id=draw(st.none() | ids),
        parent_id=draw(ids) if branch else draw(st.none() | ids),
        route=Route(actors=actors, current=draw(st.integers(0, len(actors) - 1))),
        payload=draw(json_values),
        headers=draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)),
        attempt=draw(st.integers(1, 100)),
        deadline_at=draw(st.none() | aware_datetimes),
        created_at=draw(aware_datetimes),
        branch=branch,
        error=draw(st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3)),
        model=draw(
            st.none()
            | st.builds(ModelRef, name=st.text(min_size=1, max_size=8), version=st.none() | names)
        ),
    )


@FAST
@given(envelopes())
def test_both_codecs_write_the_same_bytes_and_read_each_other(envelope: Envelope) -> None:
    written = envelope.to_json_bytes()
    wire = decode_envelope(written)
    # the same fields in the same order; numbers may be spelled differently (1e16, 1e+16)
    assert list(orjson.loads(wire.to_json_bytes()).items()) == list(orjson.loads(written).items())
    assert Envelope.from_json_bytes(wire.to_json_bytes()) == envelope
    assert wire.to_model() == envelope
    assert WireEnvelope.from_model(envelope) == wire


def _mutations() -> st.SearchStrategy[tuple[str, Any]]:
    fields = [*Envelope.model_fields, "unknown"]
    route_like = st.fixed_dictionaries(
        {"actors": st.lists(names | json_values, max_size=3)},
        optional={"current": json_values, "extra": json_values},
    )
    return st.tuples(
        st.sampled_from(fields), json_values | route_like | ids | aware_datetimes.map(str)
    )


def _judge(data: bytes) -> tuple[str, Any]:
    try:
        return "ok", Envelope.from_json_bytes(data).model_dump(mode="json")
    except ValidationError:
        return "refused", None


@FAST
@given(envelopes(), st.lists(_mutations(), min_size=1, max_size=3), st.booleans())
def test_any_input_is_accepted_or_refused_alike(
    envelope: Envelope, changes: list[tuple[str, Any]], drop: bool
) -> None:
    data: dict[str, Any] = orjson.loads(envelope.to_json_bytes())
    for name, value in changes:
        if drop:
            data.pop(name, None)
        else:
            data[name] = value
    body = wire_json.dumps(data)  # integers beyond 64 bits included
    verdict, expected = _judge(body)
    try:
        decoded = decode_envelope(body)
    except ValidationError:
        assert verdict == "refused"
        return
    assert verdict == "ok"
    got = orjson.loads(decoded.to_json_bytes())
    for generated in ("id", "created_at"):  # a dropped one is made anew, by each codec
        if generated not in data:
            del got[generated], expected[generated]
    assert got == expected


def test_a_form_only_pydantic_takes_is_still_accepted() -> None:
    body = b'{"route":{"actors":["a"]},"attempt":"2","created_at":"2026-01-01T00:00:00+00:00"}'
    wire = decode_envelope(body)
    assert (wire.attempt, wire.created_at) == (2, datetime(2026, 1, 1, tzinfo=UTC))


def test_refusals_carry_pydantics_message() -> None:
    with pytest.raises(ValidationError, match="route.current 1 is past the last actor"):
        decode_envelope(b'{"route":{"actors":["a"],"current":1}}')
    with pytest.raises(ValidationError, match="must have parent_id"):
        decode_envelope(b'{"route":{"actors":["a"]},"branch":[0]}')


def test_the_call_frame_of_a_wire_route_is_the_dtos() -> None:
    envelope = Envelope(route=Route(actors=["a", "b"], current=1), payload={"n": 1})
    wire = decode_envelope(envelope.to_json_bytes())
    assert isinstance(wire.route, WireRoute)
    by_dto = {"type": "call", "id": "1-0", "route": envelope.route.model_dump()}
    by_wire = {
        "type": "call",
        "id": "1-0",
        "route": {"actors": wire.route.actors, "current": wire.route.current},
    }
    assert encode_frame(by_wire) == encode_frame(by_dto)


def test_nesting_beyond_pydantics_limit_is_refused_as_pydantic_refuses_it() -> None:
    deep = b'{"route":{"actors":["a"]},"payload":' + b"[" * 210 + b"]" * 210 + b"}"
    with pytest.raises(ValidationError) as by_pydantic:
        Envelope.from_json_bytes(deep)
    with pytest.raises(ValidationError) as by_wire:
        decode_envelope(deep)
    assert str(by_wire.value) == str(by_pydantic.value)


def test_datetimes_beyond_microseconds_read_as_pydantic_reads_them() -> None:
    body = b'{"route":{"actors":["a"]},"created_at":"2026-01-01T00:00:00.9999999Z"}'
    assert decode_envelope(body).created_at == Envelope.from_json_bytes(body).created_at
    assert decode_envelope(body).created_at == datetime(2026, 1, 1, 0, 0, 0, 999999, tzinfo=UTC)


def test_a_wide_payload_stays_on_the_fast_path_and_a_deep_one_is_judged_by_pydantic() -> None:
    wide = orjson.dumps({"route": {"actors": ["a"]}, "payload": [{"n": i} for i in range(500)]})
    assert len(decode_envelope(wide).payload) == 500
    for separator in ("T", "t", " "):
        body = (
            b'{"route":{"actors":["a"]},"created_at":"2026-01-01'
            + separator.encode()
            + b'00:00:00.9999996Z"}'
        )
        try:
            expected: Any = Envelope.from_json_bytes(body).created_at
        except ValidationError:
            expected = "refused"
        try:
            got: Any = decode_envelope(body).created_at
        except ValidationError:
            got = "refused"
        assert got == expected
