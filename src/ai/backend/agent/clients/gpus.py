"""NVIDIA GPUs as this machine reports them: NVML (``nvidia-ml-py``), else ``nvidia-smi``.

Each probe returns the devices it found, or raises :class:`GpuProbeUnavailable` when its source
is missing (no library, no driver, no binary) so that the caller can try the next one.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

from ai.backend.common.dto.agent import DeviceInfo
from ai.backend.common.log import BraceStyleAdapter

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

NVIDIA_SMI = "nvidia-smi"
NVIDIA_SMI_QUERY = "--query-gpu=index,name,memory.total,uuid"
NVIDIA_SMI_TIMEOUT = 10.0
MIB = 1024 * 1024


class GpuProbeUnavailable(Exception):
    """This way of finding GPUs does not work on this machine (the message says why)."""


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def probe_nvml() -> list[DeviceInfo]:
    """The devices NVML knows; raises :class:`GpuProbeUnavailable` without NVML or a driver."""
    try:
        import pynvml
    except ImportError as e:
        raise GpuProbeUnavailable(f"nvidia-ml-py is not installed ({e})") from None
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        raise GpuProbeUnavailable(f"NVML: {e}") from None
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            devices.append(
                DeviceInfo(
                    id=str(index),
                    model=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory=int(memory.total),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                )
            )
        return devices
    except Exception as e:
        raise GpuProbeUnavailable(f"NVML: {e}") from None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def parse_nvidia_smi(output: str) -> list[DeviceInfo]:
    """Rows of ``index, name, memory.total (MiB), uuid`` as printed with
    ``--format=csv,noheader,nounits``; raises ``ValueError`` naming a malformed row."""
    devices = []
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4:
            raise ValueError(f"unexpected nvidia-smi row {line!r}: expected 4 fields")
        index, name, memory_mib, uuid = fields
        try:
            memory = int(float(memory_mib) * MIB)
        except ValueError:
            raise ValueError(f"unexpected memory.total {memory_mib!r} in {line!r}") from None
        devices.append(DeviceInfo(id=index, model=name, memory=memory, uuid=uuid or None))
    return devices


async def probe_nvidia_smi() -> list[DeviceInfo]:
    """The devices ``nvidia-smi`` (found on ``PATH``) lists; raises
    :class:`GpuProbeUnavailable` when it is missing, fails or prints something else."""
    binary = shutil.which(NVIDIA_SMI)
    if binary is None:
        raise GpuProbeUnavailable("nvidia-smi is not on PATH")
    try:
        process = await asyncio.create_subprocess_exec(
            binary,
            NVIDIA_SMI_QUERY,
            "--format=csv,noheader,nounits",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), NVIDIA_SMI_TIMEOUT)
    except (OSError, TimeoutError) as e:
        raise GpuProbeUnavailable(f"nvidia-smi: {e!r}") from None
    if process.returncode != 0:
        message = stderr.decode(errors="replace").strip().splitlines()
        raise GpuProbeUnavailable(
            f"nvidia-smi exited with status {process.returncode}"
            + (f": {message[-1]}" if message else "")
        )
    try:
        return parse_nvidia_smi(stdout.decode(errors="replace"))
    except ValueError as e:
        raise GpuProbeUnavailable(f"nvidia-smi: {e}") from None
