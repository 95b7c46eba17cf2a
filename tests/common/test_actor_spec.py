from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from ai.backend.common.dto.actor_spec import (
    ActorSpec,
    BackoffKind,
    PlacementSelector,
    RetryPolicy,
    ScalingPolicy,
)
from ai.backend.common.dto.base import describe_validation_error, summarize_validation_error
from ai.backend.common.types.slots import ResourceSlot

DESIGN_EXAMPLE = """
name: doubler
handler: examples.pipeline.handlers:double
pythonpath: [examples]
env: {LOG_LEVEL: info}
resources: {cpu: 1, mem: 512m, cuda.device: 1}
gpu: {model: "A100*", min_memory: 40g}
concurrency: 4
timeout: 30s
retry: {max_attempts: 3, backoff: exponential, base: 1s, max: 60s, non_retryable: [ValueError]}
scaling: {min_replicas: 0, max_replicas: 8, queue_length: 5, polling_interval: 5s,
          cooldown: 60s, scale_up: {percent: 100, pods: 4, period: 15s},
          scale_down: {percent: 50, period: 15s}}
placement: {selector: round-robin, labels: {zone: a}}
"""


def test_the_design_example_parses() -> None:
    spec = ActorSpec.from_yaml(DESIGN_EXAMPLE)
    assert spec.name == "doubler"
    assert spec.resources == ResourceSlot.parse({"cpu": 1, "mem": "512m", "cuda.device": 1})
    assert spec.gpu is not None and spec.gpu.min_memory == 40 * 1024**3
    assert spec.timeout == timedelta(seconds=30)
    assert spec.retry.non_retryable == ["ValueError"]
    assert spec.scaling.scale_up.pods == 4
    assert spec.placement.selector is PlacementSelector.ROUND_ROBIN
    assert spec.wants_gpu


def test_json_dump_uses_the_short_spellings_and_round_trips() -> None:
    spec = ActorSpec.from_yaml(DESIGN_EXAMPLE)
    dumped = spec.model_dump(mode="json")
    assert dumped["timeout"] == "30s"
    assert dumped["resources"] == {"cpu": "1", "cuda.device": "1", "mem": "536870912"}
    assert dumped["gpu"] == {"model": "A100*", "min_memory": "40g"}
    assert dumped["retry"]["max"] == "1m"
    assert ActorSpec.model_validate(dumped) == spec


def test_defaults_for_a_minimal_spec() -> None:
    spec = ActorSpec.model_validate({"name": "echo", "handler": "examples.echo:handle"})
    assert spec.resources.to_json() == {"cpu": "1"}
    assert spec.concurrency == 1
    assert spec.timeout == timedelta(seconds=60)
    assert spec.retry.max_attempts == 1
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas) == (1, 1)
    assert not spec.wants_gpu


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"name": "happy-end"}, "name", "reserved for the platform's crew actors"),
        ({"name": "Doubler"}, "name", "invalid actor name 'Doubler'"),
        ({"handler": "no_colon"}, "handler", "expected 'package.module:attribute'"),
        ({"resources": {"cuda.device": 0.5}}, "resources", "whole number of devices"),
        ({"resources": {"gpus": 1}}, "resources", "unknown resource slot 'gpus'"),
        ({"timeout": "soon"}, "timeout", "invalid duration 'soon'"),
        ({"timeout": "0s"}, "timeout", "timeout must be positive"),
        ({"retry": {"base": "10s", "max": "1s"}}, "retry", "retry.base must not exceed retry.max"),
        ({"retry": {"backoff": "random"}}, "retry.backoff", "Input should be 'exponential'"),
        ({"retry": {"tries": 3}}, "retry.tries", "unknown key"),
        ({"concurrency": 0}, "concurrency", "greater than or equal to 1"),
        ({"scaling": {"min_replicas": 3, "max_replicas": 2}}, "scaling", "exceeds"),
        ({"colour": "blue"}, "colour", "unknown key"),
        ({"placement": {"selector": "random"}}, "placement.selector", "Input should be"),
        (
            {"resources": {"cuda.device": 1, "cuda.shares": 0.5}},
            "(root)",
            "either cuda.device (whole GPUs) or cuda.shares",
        ),
        ({"resources": {"cuda.shares": 1.5}}, "(root)", "resources.cuda.shares: at most 1.0"),
        ({"gpu": {"model": "A100"}}, "(root)", "gpu: constraints given but resources ask for"),
    ],
)
def test_invalid_specs_name_the_field(change: dict[str, object], field: str, message: str) -> None:
    data = {"name": "echo", "handler": "examples.echo:handle", **change}
    with pytest.raises(ValidationError) as info:
        ActorSpec.model_validate(data)
    problems = describe_validation_error(info.value)
    assert [p["field"] for p in problems] == [field], summarize_validation_error(info.value)
    assert message in problems[0]["message"]


def test_yaml_syntax_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="invalid YAML"):
        ActorSpec.from_yaml("name: [unclosed")


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (BackoffKind.EXPONENTIAL, [1, 2, 4, 8, 10, 10]),
        (BackoffKind.LINEAR, [1, 2, 3, 4, 5, 6]),
        (BackoffKind.FIXED, [1, 1, 1, 1, 1, 1]),
    ],
)
def test_retry_delays_follow_the_backoff_and_cap(backoff: BackoffKind, delays: list[int]) -> None:
    policy = RetryPolicy(
        max_attempts=10, backoff=backoff, base=timedelta(seconds=1), max=timedelta(seconds=10)
    )
    got = [policy.delay_before(attempt).total_seconds() for attempt in range(2, 8)]
    assert got == delays


@pytest.mark.parametrize(("depth", "desired"), [(0, 1), (1, 1), (5, 1), (6, 2), (26, 6), (1000, 8)])
def test_desired_replicas_from_queue_depth(depth: int, desired: int) -> None:
    policy = ScalingPolicy(min_replicas=1, max_replicas=8, queue_length=5)
    assert policy.desired_for_depth(depth) == desired
