"""What this node offers: CPUs, memory and GPUs, as ``slots_total`` and a device list.

CPUs are the ones this process may run on (``os.sched_getaffinity``), memory is ``MemTotal`` of
``/proc/meminfo``; ``[resources] cpu`` / ``mem`` override both. GPUs come from the configured
``gpu_backend``: ``auto`` tries NVML, then ``nvidia-smi``, then assumes none; ``mock`` takes
``[[resources.mock_gpus]]``. Each GPU offers one ``cuda.device`` and 1.0 ``cuda.shares``; the
cuda slots are left out when there is no GPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from ai.backend.common.dto.agent import DeviceInfo
from ai.backend.common.log import BraceStyleAdapter
from ai.backend.common.types.slots import ResourceSlot

from ..clients.gpus import GpuProbeUnavailable, probe_nvidia_smi, probe_nvml
from ..config import GpuBackend, ResourcesConfig

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class NodeResources:
    slots_total: ResourceSlot
    devices: list[DeviceInfo] = field(default_factory=list)


def detect_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def detect_memory(meminfo: Path = MEMINFO) -> int:
    """``MemTotal`` in bytes; raises ``RuntimeError`` when it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name == "MemTotal":
                amount, _, unit = rest.strip().partition(" ")
                return int(amount) * (1024 if unit.strip().lower() == "kb" else 1)
    except (OSError, ValueError) as e:
        raise RuntimeError(f"cannot read MemTotal from {meminfo}: {e}") from None
    raise RuntimeError(f"no MemTotal in {meminfo}")


async def detect_gpus(config: ResourcesConfig) -> list[DeviceInfo]:
    match config.gpu_backend:
        case GpuBackend.NONE:
            return []
        case GpuBackend.MOCK:
            return [
                DeviceInfo(id=gpu.id, model=gpu.model, memory=gpu.memory, uuid=gpu.uuid)
                for gpu in config.mock_gpus
            ]
        case GpuBackend.NVML:
            return probe_nvml()
        case GpuBackend.NVIDIA_SMI:
            return await probe_nvidia_smi()
    try:
        return probe_nvml()
    except GpuProbeUnavailable as e:
        log.info("no GPUs through NVML ({}); trying nvidia-smi", e)
    try:
        return await probe_nvidia_smi()
    except GpuProbeUnavailable as e:
        log.info("no GPUs through nvidia-smi ({}); offering none", e)
    return []


def slots_of(*, cpu: Decimal, mem: int, devices: list[DeviceInfo]) -> ResourceSlot:
    slots: dict[str, Decimal] = {"cpu": cpu, "mem": Decimal(mem)}
    if devices:
        slots["cuda.device"] = Decimal(len(devices))
        slots["cuda.shares"] = Decimal(len(devices))  # 1.0 per device
    return ResourceSlot(slots)


async def detect_resources(config: ResourcesConfig) -> NodeResources:
    """Raises :class:`GpuProbeUnavailable` when an explicitly chosen GPU backend fails."""
    cpu = Decimal(repr(config.cpu)) if config.cpu is not None else Decimal(detect_cpus())
    mem = config.mem if config.mem is not None else detect_memory()
    devices = await detect_gpus(config)
    return NodeResources(slots_of(cpu=cpu, mem=mem, devices=devices), devices)
