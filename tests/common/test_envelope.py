from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ai.backend.common.dto.base import summarize_validation_error
from ai.backend.common.dto.envelope import Envelope, Route


def _design_example() -> dict[str, object]:
    return {
        "v": 1,
        "id": "7f2c1d0e9a8b4c3d2e1f0a9b8c7d6e5f",
        "job_id": "job-1",
        "parent_id": None,
        "route": {"actors": ["doubler", "incrementer"], "current": 0},
        "payload": {"value": 10},
        "headers": {"trace_id": "abc"},
        "attempt": 1,
        "deadline_at": "2026-11-24T10:00:00Z",
        "created_at": "2026-11-24T09:59:00Z",
    }


def test_the_design_example_round_trips_exactly() -> None:
    envelope = Envelope.model_validate(_design_example())
    assert envelope.route.current_actor == "doubler"
    assert envelope.deadline_at == datetime(2026, 11, 24, 10, tzinfo=UTC)
    again = Envelope.from_json_bytes(envelope.to_json_bytes())
    assert again == envelope
    assert json.loads(envelope.to_json_bytes())["payload"] == {"value": 10}


def test_defaults_fill_a_minimal_envelope() -> None:
    envelope = Envelope(route=Route(actors=["echo"]), payload=[1, 2])
    assert envelope.v == 1
    assert len(envelope.id) == 32
    assert envelope.attempt == 1
    assert envelope.headers == {}
    assert envelope.created_at.tzinfo is not None


def test_route_advances_and_keeps_its_actors() -> None:
    route = Route(actors=["a", "b"])
    assert not route.is_last
    nxt = route.advanced()
    assert (nxt.current_actor, nxt.is_last) == ("b", True)
    with pytest.raises(IndexError, match="route has no next actor"):
        nxt.advanced()


def test_user_routes_may_not_name_the_crew() -> None:
    with pytest.raises(ValueError, match="route must not name the crew actors: happy-end"):
        Route.for_user(["doubler", "happy-end"])
    assert Route.for_user(["doubler"]).actors == ["doubler"]


def test_a_user_route_leaves_room_for_the_crew() -> None:
    longest = [f"a{i}" for i in range(64)]
    assert len(Route.for_user(longest).actors) == 64
    assert len(Route(actors=[*longest, "happy-end"]).actors) == 65
    with pytest.raises(ValueError, match="route: at most 64 actors"):
        Route.for_user([*longest, "a64"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "v: Input should be 1"),
        ({"route": {"actors": ["a"], "current": 1}}, "route: route.current 1 is past the last"),
        ({"route": {"actors": []}}, "route.actors: List should have at least 1 item"),
        ({"route": {"actors": ["Bad_Name"]}}, "route.actors[0]: invalid actor name 'Bad_Name'"),
        ({"attempt": 0}, "attempt: Input should be greater than or equal to 1"),
        ({"deadline_at": "2026-11-24T10:00:00"}, "deadline_at: Input should have timezone info"),
        ({"headers": {"x": 1}}, "headers.x: Input should be a valid string"),
        ({"extra": True}, "extra: unknown key"),
        ({"id": "a\nb"}, "id: ids must be printable text"),
        ({"branch": [0]}, "an envelope with a branch (a fan-out child) must have parent_id"),
    ],
)
def test_bad_envelopes_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Envelope.model_validate({**_design_example(), **change})
    assert message in summarize_validation_error(info.value)


def test_malformed_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="Invalid JSON"):
        Envelope.from_json_bytes(b'{"v": 1, "route": ')


def test_expiry_compares_with_the_deadline() -> None:
    now = datetime(2026, 11, 24, 10, tzinfo=UTC)
    envelope = Envelope(route=Route(actors=["a"]), deadline_at=now)
    assert envelope.is_expired(now)
    assert not envelope.is_expired(now - timedelta(seconds=1))
    assert not Envelope(route=Route(actors=["a"])).is_expired(now)


def test_payloads_keep_unicode_nesting_and_nulls() -> None:
    nested: object = {"leaf": None}
    for depth in range(20):
        nested = {"level": depth, "child": nested, "text": "héllo 世界 🚀"}
    envelope = Envelope(route=Route(actors=["a"]), payload=nested)
    assert Envelope.from_json_bytes(envelope.to_json_bytes()).payload == nested
