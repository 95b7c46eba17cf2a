"""Queue-depth scaling decisions (DESIGN.md §8): KEDA's activation and cooldown on top of the
Kubernetes HPA's rate-limited scaling, as one pure function.

For an actor with ``current`` replicas and ``depth`` queued entries (the consumer group's lag +
pending count):

1. ``target = ceil(depth / queue_length)`` clamped to ``[min_replicas, max_replicas]``;
2. a count outside the bounds (``min``/``max`` changed by an apply) moves into them at once;
3. **activation**: at 0 replicas, any ``depth > 0`` gives 1 replica at once (not rate-limited);
4. **scale up** at most once per ``scale_up.period``, to at most
   ``max(ceil(current * (1 + percent/100)), current + pods)`` (whichever is larger);
5. **scale down** at most once per ``scale_down.period``, to at least
   ``ceil(current * (1 - percent/100))`` but always by at least one, and never below 1:
6. **scale to zero** only when ``min_replicas == 0`` and the queue has been empty (nothing
   queued, nothing pending) for ``cooldown``; then straight to 0, whatever the count.

The state (when it last scaled each way, since when the queue is empty) is the caller's to keep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from ai.backend.common.dto.actor_spec import ScalingPolicy
from ai.backend.common.types.units import format_duration


class ScaleKind(StrEnum):
    """What a change does; also the ``kind`` of its ``scheduler_events`` row."""

    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    SCALE_TO_ZERO = "scale_to_zero"
    ACTIVATE = "activate"


@dataclass(frozen=True, slots=True)
class ScalerState:
    """The autoscaler's memory of one actor (stored on its row)."""

    scaled_up_at: datetime | None = None
    scaled_down_at: datetime | None = None
    idle_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """``desired`` replicas (``== current`` when nothing changes), the new state and why."""

    current: int
    desired: int
    depth: int
    state: ScalerState
    reason: str
    kind: ScaleKind | None = None
    actor_name: str | None = None  # filled in by the autoscaler; the policy knows no names

    @property
    def changed(self) -> bool:
        return self.desired != self.current


def scale_up_limit(policy: ScalingPolicy, current: int) -> int:
    """The most replicas one scale-up step may reach from ``current``."""
    by_percent = math.ceil(current * (100 + policy.scale_up.percent) / 100)
    return max(by_percent, current + policy.scale_up.pods)


def scale_down_floor(policy: ScalingPolicy, current: int) -> int:
    """The fewest replicas one scale-down step may reach from ``current`` (≥ 1: only the zero
    rule reaches 0); a step removes at least one replica unless ``percent`` is 0."""
    percent = policy.scale_down.percent
    if percent == 0:
        return current
    floor = math.ceil(current * (100 - percent) / 100)
    return max(1, min(floor, current - 1))


def _elapsed(since: datetime | None, now: datetime, period: timedelta) -> bool:
    return since is None or now - since >= period


def decide(
    policy: ScalingPolicy, current: int, depth: int, state: ScalerState, now: datetime
) -> ScaleDecision:
    """The replicas an actor should have now; see the module docstring for the rules."""
    idle_since = (state.idle_since or now) if depth == 0 else None
    state = replace(state, idle_since=idle_since)
    target = policy.desired_for_depth(depth)
    about = f"queue depth {depth} ({policy.queue_length} per replica wants {target})"

    def hold(why: str) -> ScaleDecision:
        return ScaleDecision(current, current, depth, state, f"{about}: stay at {current}, {why}")

    def up(desired: int, kind: ScaleKind, why: str) -> ScaleDecision:
        new_state = replace(state, scaled_up_at=now)
        reason = f"{about}: {current} → {desired} ({why})"
        return ScaleDecision(current, desired, depth, new_state, reason, kind)

    def down(desired: int, kind: ScaleKind, why: str) -> ScaleDecision:
        new_state = replace(state, scaled_down_at=now)
        reason = f"{about}: {current} → {desired} ({why})"
        return ScaleDecision(current, desired, depth, new_state, reason, kind)

    if current > policy.max_replicas:
        kind = ScaleKind.SCALE_TO_ZERO if policy.max_replicas == 0 else ScaleKind.SCALE_DOWN
        return down(policy.max_replicas, kind, f"above max_replicas {policy.max_replicas}")
    if current < policy.min_replicas:
        return up(
            policy.min_replicas, ScaleKind.SCALE_UP, f"below min_replicas {policy.min_replicas}"
        )
    if current == 0:
        if target == 0:
            return hold("the queue is empty")
        return up(1, ScaleKind.ACTIVATE, "activation from zero")
    if target > current:
        up_period = policy.scale_up.period
        if not _elapsed(state.scaled_up_at, now, up_period):
            return hold(f"scaled up less than {format_duration(up_period)} ago")
        limit = scale_up_limit(policy, current)
        desired = min(target, limit)
        if desired == current:
            return hold("scale-up is disabled (scale_up.percent 0 and scale_up.pods 0)")
        why = (
            f"scale-up limit +{limit - current} per {format_duration(up_period)}"
            if desired < target
            else f"within the scale-up limit +{limit - current}"
        )
        return up(desired, ScaleKind.SCALE_UP, why)
    if target < current:
        if target == 0:
            cooldown = policy.cooldown
            if idle_since is not None and now - idle_since >= cooldown:
                idle_for = format_duration(now - idle_since)
                return down(0, ScaleKind.SCALE_TO_ZERO, f"queue empty for {idle_for}")
            if current == 1:
                return hold(f"scale to zero after {format_duration(cooldown)} of an empty queue")
        down_period = policy.scale_down.period
        if not _elapsed(state.scaled_down_at, now, down_period):
            return hold(f"scaled down less than {format_duration(down_period)} ago")
        floor = scale_down_floor(policy, current)
        desired = max(target, floor)
        if desired == current:
            return hold("scale-down is disabled (scale_down.percent 0)")
        why = (
            f"scale-down limit -{current - floor} per {format_duration(down_period)}"
            if desired > target
            else f"within the scale-down limit -{current - floor}"
        )
        return down(desired, ScaleKind.SCALE_DOWN, why)
    return hold("as wanted")
