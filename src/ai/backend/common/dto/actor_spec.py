"""ActorSpec (DESIGN.md §4.5): what a user deploys with ``./backend.ai actor apply -f``."""

from __future__ import annotations

import math
from datetime import timedelta
from enum import StrEnum
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator

from ..types.slots import ResourceSlot
from ..types.units import BinarySize, Duration
from .base import HandlerRef, StrictModel, UserActorName


class ActorStatus(StrEnum):
    ACTIVE = "active"
    DELETING = "deleting"


class BackoffKind(StrEnum):
    EXPONENTIAL = "exponential"
    LINEAR = "linear"
    FIXED = "fixed"


class ExecutionMode(StrEnum):
    """Where an actor's handler runs: in a runtime process of its own beside the sidecar (the
    default: isolated, any interpreter), or inside the sidecar (one process per replica, for
    trusted pure-Python handlers; a crash or a stuck sync handler takes the sidecar with it)."""

    RUNTIME = "runtime"
    INPROCESS = "inprocess"


class PlacementSelector(StrEnum):
    CONCENTRATED = "concentrated"
    DISPERSED = "dispersed"
    ROUND_ROBIN = "round-robin"


MAX_RETRY_DELAY = timedelta(minutes=10)


class RetryPolicy(StrictModel):
    """How failed calls are retried; ``max_attempts: 1`` means no retry.

    ``max_deliveries`` bounds redeliveries of one stream entry that never got an outcome (its
    replica died, or its outcome could not be written): past it the envelope goes to the DLQ
    with reason ``delivery_limit`` (RabbitMQ's ``x-delivery-limit``, SQS's ``maxReceiveCount``).
    """

    max_attempts: int = Field(default=1, ge=1, le=100)
    max_deliveries: int = Field(default=5, ge=1, le=1000)
    backoff: BackoffKind = BackoffKind.EXPONENTIAL
    base: Duration = timedelta(seconds=1)
    max: Duration = timedelta(seconds=60)
    non_retryable: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _base_not_above_max(self) -> RetryPolicy:
        if self.base > self.max:
            raise ValueError("retry.base must not exceed retry.max")
        if self.max > MAX_RETRY_DELAY:
            raise ValueError("retry.max: at most 10m (a retry must come while its job is open)")
        return self

    def delay_before(self, attempt: int) -> timedelta:
        """The wait before ``attempt`` (2 = the first retry), capped at ``max``."""
        retries = max(attempt - 1, 1)
        match self.backoff:
            case BackoffKind.FIXED:
                delay = self.base
            case BackoffKind.LINEAR:
                delay = self.base * retries
            case BackoffKind.EXPONENTIAL:
                delay = self.base * (2 ** (retries - 1))
        return min(delay, self.max)


class ScaleUpPolicy(StrictModel):
    percent: int = Field(default=100, ge=0)
    pods: int = Field(default=4, ge=0)
    period: Duration = timedelta(seconds=15)


class ScaleDownPolicy(StrictModel):
    percent: int = Field(default=50, ge=0, le=100)
    period: Duration = timedelta(seconds=15)


class ScalingPolicy(StrictModel):
    """Queue-depth autoscaling (DESIGN.md §8). Defaults (DESIGN.md §6a): ``min_replicas: 1``,
    ``max_replicas: max(1, min_replicas)``; opt into scale-to-zero with ``min_replicas: 0``."""

    min_replicas: int = Field(default=1, ge=0, le=1000)
    max_replicas: int = Field(default=1, ge=0, le=1000)
    queue_length: int = Field(default=5, ge=1)
    polling_interval: Duration = timedelta(seconds=5)
    cooldown: Duration = timedelta(seconds=60)
    scale_up: ScaleUpPolicy = Field(default_factory=ScaleUpPolicy)
    scale_down: ScaleDownPolicy = Field(default_factory=ScaleDownPolicy)

    @model_validator(mode="before")
    @classmethod
    def _max_follows_min(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_replicas" not in data:
            minimum = data.get("min_replicas", 1)
            if isinstance(minimum, int) and not isinstance(minimum, bool):
                return {**data, "max_replicas": max(1, minimum)}
        return data

    @model_validator(mode="after")
    def _bounds_in_order(self) -> ScalingPolicy:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"scaling.min_replicas ({self.min_replicas}) exceeds scaling.max_replicas"
                f" ({self.max_replicas})"
            )
        return self

    def desired_for_depth(self, depth: int) -> int:
        """``ceil(depth / queue_length)`` clamped to ``[min_replicas, max_replicas]``."""
        wanted = math.ceil(depth / self.queue_length)
        return max(self.min_replicas, min(self.max_replicas, wanted))


class PlacementPolicy(StrictModel):
    selector: PlacementSelector = PlacementSelector.CONCENTRATED
    labels: dict[str, str] = Field(default_factory=dict)


class GpuConstraint(StrictModel):
    """Constraints on the device model (a glob, e.g. ``A100*``) and its memory."""

    model: str | None = Field(default=None, min_length=1)
    min_memory: BinarySize | None = None


class ActorSpec(StrictModel):
    name: UserActorName
    handler: HandlerRef
    pythonpath: list[str] = Field(default_factory=list)
    python: str | None = None
    execution: ExecutionMode = ExecutionMode.RUNTIME
    env: dict[str, str] = Field(default_factory=dict)
    resources: ResourceSlot = Field(default_factory=lambda: ResourceSlot.parse({"cpu": 1}))
    gpu: GpuConstraint | None = None
    concurrency: int = Field(default=1, ge=1, le=4096)
    timeout: Duration = timedelta(seconds=60)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    scaling: ScalingPolicy = Field(default_factory=ScalingPolicy)
    placement: PlacementPolicy = Field(default_factory=PlacementPolicy)

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("timeout must be positive")
        return value

    @model_validator(mode="after")
    def _interpreter_needs_a_runtime(self) -> ActorSpec:
        if self.python is not None and self.execution is ExecutionMode.INPROCESS:
            raise ValueError(
                "python: an in-process actor runs in the sidecar's interpreter; use"
                " execution: runtime to run the handler under another one"
            )
        return self

    @model_validator(mode="after")
    def _gpu_slots_consistent(self) -> ActorSpec:
        devices = self.resources.amount("cuda.device")
        shares = self.resources.amount("cuda.shares")
        if devices and shares:
            raise ValueError(
                "resources: ask for either cuda.device (whole GPUs) or cuda.shares (a fraction),"
                " not both"
            )
        if shares > 1:
            raise ValueError("resources.cuda.shares: at most 1.0 (a fraction of one GPU)")
        if self.gpu is not None and not (devices or shares):
            raise ValueError("gpu: constraints given but resources ask for no GPU")
        return self

    @property
    def wants_gpu(self) -> bool:
        return bool(self.resources.amount("cuda.device") or self.resources.amount("cuda.shares"))

    @classmethod
    def from_yaml(cls, text: str) -> ActorSpec:
        """Parse a YAML (or JSON) document; raises ``ValueError`` for YAML syntax errors and
        ``pydantic.ValidationError`` for bad fields."""
        try:
            data: Any = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"invalid YAML: {e}") from None
        return cls.model_validate(data)
