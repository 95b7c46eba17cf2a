"""A GPU actor. The spec asks for GPU resources (``cuda.shares: 0.5``: half of one device, or
``cuda.device: N`` for whole devices); the scheduler picks an agent with room and concrete
devices on it, and the agent starts the replica with ``CUDA_VISIBLE_DEVICES`` set to those
device ids (and ``BACKEND_GPU_SHARE`` to the fraction), so CUDA frameworks (PyTorch,
TensorFlow, vLLM …) see only the devices the replica owns::

    ./backend.ai actor apply -f examples/gpu/gpu-probe.yaml
    ./backend.ai actor get gpu-probe           # the replica's agent and device ids
    ./backend.ai job run gpu_info --follow     # {"CUDA_VISIBLE_DEVICES": "0", ...}

Without GPUs, agents offer mock devices (``[[resources.mock_gpus]]``; ``dev up`` starts its
agents with some): scheduling and the environment are the same, only the devices are pretend.
"""

from __future__ import annotations

import os
from typing import Any


def describe_gpu(payload: dict[str, Any]) -> dict[str, Any]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {
        "CUDA_VISIBLE_DEVICES": visible,
        "BACKEND_GPU_SHARE": os.environ.get("BACKEND_GPU_SHARE"),
        "devices": [device for device in visible.split(",") if device],
    }
