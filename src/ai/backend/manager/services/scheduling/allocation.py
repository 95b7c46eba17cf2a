"""The scheduler's in-memory view of agents: capacity, devices and what is allocated on them.

Allocations are derived, never counted: an :class:`AgentState` starts from the agent's totals
and its devices, then :meth:`AgentState.allocate` folds in each replica that holds slots there
(replicas in ``ALLOCATED_REPLICA_STATUSES``). GPU usage lives on the devices:

* a replica asking for ``cuda.device: n`` holds ``n`` devices *whole*;
* a replica asking for ``cuda.shares: s`` (``s`` ≤ 1) holds a share ``s`` of one device;
* a device is either whole-allocated (once) or shared (shares summing to at most 1.0), never
  both. ``cuda.device`` / ``cuda.shares`` in :attr:`AgentState.slots_used` are computed from
  the devices, every other slot (``cpu``, ``mem`` …) from the replicas' slots.

Nothing here does I/O; the state is mutable only so that one scheduling pass can place many
replicas against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ai.backend.common.dto.actor_spec import (
    ActorSpec,
    GpuConstraint,
    PlacementPolicy,
    PlacementSelector,
)
from ai.backend.common.types.slots import ResourceSlot
from ai.backend.common.types.units import parse_size

DEVICE_SLOT = "cuda.device"
SHARE_SLOT = "cuda.shares"
GPU_SLOTS = frozenset({DEVICE_SLOT, SHARE_SLOT})
GPU_DEVICE_KIND = "cuda"
_ZERO = Decimal(0)
_ONE = Decimal(1)
_SLOT_ORDER = {"cpu": 0, "mem": 1}


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One accelerator of an agent, as it reported it."""

    id: str
    model: str
    memory: int
    kind: str = GPU_DEVICE_KIND

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeviceSpec:
        """An agent's ``devices`` entry (``memory`` in bytes or as ``"80g"``)."""
        memory = data.get("memory")
        return cls(
            id=str(data["id"]),
            model=str(data.get("model") or ""),
            memory=parse_size(memory) if memory is not None else 0,
            kind=str(data.get("kind") or GPU_DEVICE_KIND),
        )


@dataclass(slots=True)
class DeviceUsage:
    """What is allocated on one device: the replicas holding it whole (more than one would be
    a double allocation), or the sum of the shares on it."""

    whole: int = 0
    shares: Decimal = _ZERO

    @property
    def is_free(self) -> bool:
        return not self.whole and self.shares == 0


@dataclass(frozen=True)
class ReplicaRequest:
    """What one replica needs: its slots, GPU constraints and placement policy. Hashable, so
    a pass can remember its answer for identical requests."""

    actor_name: str
    slots: ResourceSlot
    selector: PlacementSelector = PlacementSelector.CONCENTRATED
    labels: tuple[tuple[str, str], ...] = ()
    gpu_model: str | None = None
    gpu_min_memory: int | None = None
    # derived once: the non-GPU slots asked for, scarcest first (cpu, mem, then by name)
    needs: tuple[tuple[str, Decimal], ...] = field(init=False, compare=False, repr=False)
    device_count: int = field(init=False, compare=False, repr=False)
    share: Decimal = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        names = [name for name, v in self.slots.items() if v and name not in GPU_SLOTS]
        names.sort(key=lambda name: (_SLOT_ORDER.get(name, len(_SLOT_ORDER)), name))
        object.__setattr__(self, "needs", tuple((name, self.slots[name]) for name in names))
        object.__setattr__(self, "device_count", int(self.slots.amount(DEVICE_SLOT)))
        object.__setattr__(self, "share", self.slots.amount(SHARE_SLOT))

    @classmethod
    def build(
        cls,
        *,
        actor_name: str,
        slots: ResourceSlot,
        gpu: GpuConstraint | None = None,
        placement: PlacementPolicy | None = None,
    ) -> ReplicaRequest:
        policy = placement or PlacementPolicy()
        return cls(
            actor_name=actor_name,
            slots=slots,
            selector=policy.selector,
            labels=tuple(sorted(policy.labels.items())),
            gpu_model=gpu.model if gpu else None,
            gpu_min_memory=gpu.min_memory if gpu else None,
        )

    @classmethod
    def from_spec(cls, spec: ActorSpec) -> ReplicaRequest:
        return cls.build(
            actor_name=spec.name, slots=spec.resources, gpu=spec.gpu, placement=spec.placement
        )

    @property
    def wants_gpu(self) -> bool:
        return self.device_count > 0 or self.share > 0

    @property
    def accelerator_families(self) -> frozenset[str]:
        return frozenset(_family(name) for name, v in self.slots.items() if v and "." in name)


@dataclass(frozen=True)
class Placement:
    """Where a replica goes: an agent, the concrete device ids (empty for CPU-only replicas)
    and the slots it holds."""

    agent_id: str
    device_ids: tuple[str, ...]
    slots: ResourceSlot


@dataclass(frozen=True)
class NoFit:
    """Why a replica cannot be placed now, in words a user can act on."""

    message: str


def _family(slot_name: str) -> str:
    """``cuda.device`` and ``cuda.shares`` are both the ``cuda`` accelerator."""
    return slot_name.split(".", 1)[0]


@dataclass(eq=False)
class AgentState:
    """An agent's capacity and its current allocations. ``devices`` keep the agent's order,
    which is the first-fit order for whole devices."""

    id: str
    slots_total: ResourceSlot
    devices: Sequence[DeviceSpec] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    alive: bool = True
    used: dict[str, Decimal] = field(init=False)
    free_slots: dict[str, Decimal] = field(init=False)
    usage: list[DeviceUsage] = field(init=False)
    device_index: dict[str, int] = field(init=False)
    accelerator_families: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.used = {}
        self.free_slots = {n: v for n, v in self.slots_total.items() if n not in GPU_SLOTS}
        self.usage = [DeviceUsage() for _ in self.devices]
        self.device_index = {device.id: i for i, device in enumerate(self.devices)}
        offered = {_family(n) for n, v in self.slots_total.items() if v and "." in n}
        offered.update(device.kind for device in self.devices)
        self.accelerator_families = frozenset(offered)

    @classmethod
    def from_json(
        cls,
        *,
        id: str,
        slots_total: Mapping[str, Any],
        devices: Iterable[Mapping[str, Any]],
        labels: Mapping[str, Any] | None = None,
        alive: bool = True,
    ) -> AgentState:
        """An agent row's JSON columns (string amounts, device dicts)."""
        return cls(
            id=id,
            slots_total=ResourceSlot.parse(slots_total),
            devices=tuple(DeviceSpec.from_json(d) for d in devices),
            labels={str(k): str(v) for k, v in (labels or {}).items()},
            alive=alive,
        )

    def allocate(self, slots: ResourceSlot, device_ids: Iterable[str] = ()) -> None:
        """Fold in one replica's allocation (an existing one, or a new placement). Device ids
        the agent no longer reports are ignored."""
        for name, amount in slots.items():
            if name not in GPU_SLOTS and amount:
                self.used[name] = self.used.get(name, _ZERO) + amount
                self.free_slots[name] = self.free_slots.get(name, _ZERO) - amount
        share = slots.amount(SHARE_SLOT)
        whole = bool(slots.amount(DEVICE_SLOT))
        for device_id in device_ids:
            index = self.device_index.get(device_id)
            if index is None:
                continue
            if whole:
                self.usage[index].whole += 1
            elif share:
                self.usage[index].shares += share

    def free(self, name: str) -> Decimal:
        """Free amount of a non-GPU slot (negative when over-allocated)."""
        return self.free_slots.get(name, _ZERO)

    @property
    def slots_used(self) -> ResourceSlot:
        """Used slots for display: replica slots summed, GPU slots counted on the devices."""
        used = {name: amount for name, amount in self.used.items() if amount}
        whole = sum(u.whole for u in self.usage)
        shares = sum((u.shares for u in self.usage), _ZERO)
        if whole:
            used[DEVICE_SLOT] = Decimal(whole)
        if shares:
            used[SHARE_SLOT] = shares
        return ResourceSlot(used)

    def over_allocated_devices(self) -> list[str]:
        """Ids of devices held beyond capacity: whole twice, whole and shared, or shares
        above 1.0."""
        return [
            device.id
            for device, u in zip(self.devices, self.usage, strict=True)
            if u.whole > 1 or u.shares > _ONE or (u.whole and u.shares > 0)
        ]
