from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai.backend.common.dto.actor_spec import ScalingPolicy
from ai.backend.manager.services.autoscaling.policy import (
    ScaleKind,
    ScalerState,
    decide,
    scale_down_floor,
    scale_up_limit,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def policy(**fields: Any) -> ScalingPolicy:
    """DESIGN.md §8's defaults with scale-to-zero: 0..20, 5 per replica, +100 % or +4 / -50 %
    per 15 s, cooldown 60 s."""
    return ScalingPolicy.model_validate({"min_replicas": 0, "max_replicas": 20, **fields})


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@dataclass(frozen=True)
class Case:
    current: int
    depth: int
    expected: int
    kind: ScaleKind | None
    state: ScalerState = ScalerState()
    policy: ScalingPolicy = policy()


CASES = {
    "activation from zero at the first message": Case(0, 1, 1, ScaleKind.ACTIVATE),
    "activation is not rate-limited": Case(
        0, 100, 1, ScaleKind.ACTIVATE, ScalerState(scaled_up_at=ago(1))
    ),
    "zero stays zero on an empty queue": Case(0, 0, 0, None),
    "scale up by +4 when it beats +100 %": Case(2, 37, 6, ScaleKind.SCALE_UP),
    "scale up by +100 % when it beats +4": Case(
        10, 500, 20, ScaleKind.SCALE_UP, policy=policy(max_replicas=50)
    ),
    "scale up straight to the target within the limit": Case(2, 20, 4, ScaleKind.SCALE_UP),
    "scale up waits for its period": Case(2, 37, 2, None, ScalerState(scaled_up_at=ago(14))),
    "scale up again once the period passed": Case(
        2, 37, 6, ScaleKind.SCALE_UP, ScalerState(scaled_up_at=ago(15))
    ),
    "scale up stops at max_replicas": Case(18, 1000, 20, ScaleKind.SCALE_UP),
    "scale down by -50 %": Case(8, 5, 4, ScaleKind.SCALE_DOWN),
    "scale down straight to the target within the limit": Case(8, 30, 6, ScaleKind.SCALE_DOWN),
    "scale down waits for its period": Case(8, 5, 8, None, ScalerState(scaled_down_at=ago(3))),
    "scale down removes at least one replica": Case(
        3, 5, 2, ScaleKind.SCALE_DOWN, policy=policy(scale_down={"percent": 20})
    ),
    "scale down disabled with percent 0": Case(
        3, 5, 3, None, policy=policy(scale_down={"percent": 0})
    ),
    "an empty queue scales down, but not below 1 before the cooldown": Case(
        4, 0, 2, ScaleKind.SCALE_DOWN
    ),
    "one replica waits for the cooldown": Case(1, 0, 1, None, ScalerState(idle_since=ago(59))),
    "to zero after the cooldown": Case(
        1, 0, 0, ScaleKind.SCALE_TO_ZERO, ScalerState(idle_since=ago(60))
    ),
    "to zero from many at once after the cooldown": Case(
        6, 0, 0, ScaleKind.SCALE_TO_ZERO, ScalerState(idle_since=ago(61), scaled_down_at=ago(1))
    ),
    "never to zero with min_replicas 1": Case(
        1, 0, 1, None, ScalerState(idle_since=ago(3600)), policy(min_replicas=1)
    ),
    "up to min_replicas at once": Case(
        0, 0, 2, ScaleKind.SCALE_UP, ScalerState(scaled_up_at=ago(1)), policy(min_replicas=2)
    ),
    "down to max_replicas at once": Case(
        5, 100, 3, ScaleKind.SCALE_DOWN, ScalerState(scaled_down_at=ago(1)), policy(max_replicas=3)
    ),
    "max_replicas 0 stops the actor": Case(
        2, 10, 0, ScaleKind.SCALE_TO_ZERO, policy=policy(max_replicas=0)
    ),
    "as wanted": Case(4, 20, 4, None),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decision(case: Case) -> None:
    decision = decide(case.policy, case.current, case.depth, case.state, NOW)
    assert (decision.desired, decision.kind) == (case.expected, case.kind), decision.reason
    assert decision.changed == (case.expected != case.current)


def test_reason_names_depth_counts_and_limit() -> None:
    decision = decide(policy(), 2, 37, ScalerState(), NOW)
    assert decision.reason == (
        "queue depth 37 (5 per replica wants 8): 2 → 6 (scale-up limit +4 per 15s)"
    )


def test_state_records_when_it_scaled_and_since_when_the_queue_is_empty() -> None:
    up = decide(policy(), 2, 37, ScalerState(idle_since=ago(5)), NOW)
    assert up.state == ScalerState(scaled_up_at=NOW, idle_since=None)
    down = decide(policy(), 4, 0, ScalerState(), NOW)
    assert down.state == ScalerState(scaled_down_at=NOW, idle_since=NOW)
    still_idle = decide(policy(), 2, 0, ScalerState(idle_since=ago(30), scaled_down_at=ago(1)), NOW)
    assert still_idle.state.idle_since == ago(30)


def test_sub_second_periods() -> None:
    fast = policy(polling_interval="100ms", cooldown="1s", scale_up={"period": "0.5s"})
    assert fast.scale_up.period == timedelta(milliseconds=500)
    held = decide(fast, 1, 50, ScalerState(scaled_up_at=ago(0.4)), NOW)
    assert held.desired == 1
    assert decide(fast, 1, 50, ScalerState(scaled_up_at=ago(0.5)), NOW).desired == 5


durations = st.integers(min_value=0, max_value=30).map(lambda s: timedelta(seconds=s))
moments = st.none() | st.integers(min_value=0, max_value=120).map(ago)


@st.composite
def policies(draw: st.DrawFn) -> ScalingPolicy:
    minimum = draw(st.integers(min_value=0, max_value=10))
    return ScalingPolicy.model_validate(
        {
            "min_replicas": minimum,
            "max_replicas": draw(st.integers(min_value=minimum, max_value=40)),
            "queue_length": draw(st.integers(min_value=1, max_value=10)),
            "cooldown": draw(durations),
            "scale_up": {
                "percent": draw(st.integers(min_value=0, max_value=300)),
                "pods": draw(st.integers(min_value=0, max_value=10)),
                "period": draw(durations),
            },
            "scale_down": {
                "percent": draw(st.integers(min_value=0, max_value=100)),
                "period": draw(durations),
            },
        }
    )


@settings(max_examples=500, deadline=None)
@given(
    policy=policies(),
    current=st.integers(min_value=0, max_value=50),
    depth=st.integers(min_value=0, max_value=600),
    state=st.builds(ScalerState, moments, moments, moments),
)
def test_decisions_stay_in_bounds_and_within_the_rate_limits(
    policy: ScalingPolicy, current: int, depth: int, state: ScalerState
) -> None:
    decision = decide(policy, current, depth, state, NOW)
    desired = decision.desired
    assert policy.min_replicas <= desired <= policy.max_replicas
    assert (decision.kind is None) == (desired == current)
    if not policy.min_replicas <= current <= policy.max_replicas:
        return  # out of bounds: back into them at once
    target = policy.desired_for_depth(depth)
    if desired > current:
        assert desired <= target
        if decision.kind is ScaleKind.ACTIVATE:
            assert (current, desired) == (0, 1) and depth > 0
        else:
            assert current > 0 and desired <= scale_up_limit(policy, current)
            assert state.scaled_up_at is None or NOW - state.scaled_up_at >= policy.scale_up.period
    elif desired < current:
        assert desired >= target
        if desired == 0:
            assert policy.min_replicas == 0 and depth == 0
            # the queue has been empty for the cooldown (counted from this poll if it just
            # emptied: a cooldown of 0 goes to zero at once)
            idle_since = decision.state.idle_since
            assert idle_since is not None and NOW - idle_since >= policy.cooldown
            assert state.idle_since is None or idle_since == state.idle_since
        else:
            assert desired >= scale_down_floor(policy, current)
            down_period = policy.scale_down.period
            assert state.scaled_down_at is None or NOW - state.scaled_down_at >= down_period


def test_a_disabled_scale_up_holds_instead_of_a_step_of_nothing() -> None:
    policy = ScalingPolicy.model_validate(
        {
            "min_replicas": 0,
            "max_replicas": 2,
            "queue_length": 1,
            "scale_up": {"percent": 0, "pods": 0},
        }
    )
    decision = decide(policy, 1, 2, ScalerState(), NOW)
    assert (decision.desired, decision.kind) == (1, None)
    assert decision.reason.endswith(
        "stay at 1, scale-up is disabled (scale_up.percent 0 and scale_up.pods 0)"
    )
