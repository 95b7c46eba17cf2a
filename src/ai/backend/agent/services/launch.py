"""The command lines and environments of a replica's processes (pure functions).

- ``runtime`` (``execution: runtime``, not the crew): the spec's interpreter (or ours) runs
  ``-m ai.backend.runtime``; with ``python:`` set, ``PYTHONPATH`` gains the source root of
  ``ai.backend.runtime`` (the user's venv has none of our packages; the runtime needs only the
  standard library). Its environment: the agent's minus ``BACKEND_*``, the spec's ``env``, and
  the GPU environment of the allocation (``CUDA_VISIBLE_DEVICES``, ``BACKEND_GPU_SHARE``).
- ``sidecar``: ``-m ai.backend.cli sidecar run`` under the agent's interpreter, with the
  agent's Redis; the crew gets neither ``--spec`` nor ``--socket``, an in-process actor no
  ``--socket`` (and the GPU environment, since its handler runs in the sidecar).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import ai.backend.runtime.__main__ as runtime_entry  # the module the runtime is started as
from ai.backend.common.dto.actor_spec import ExecutionMode
from ai.backend.common.dto.agent import DesiredReplica
from ai.backend.common.dto.base import RESERVED_ACTOR_NAMES

from .replica_files import ReplicaPaths

RUNTIME = "runtime"
SIDECAR = "sidecar"
AGENT_ENV_PREFIX = "BACKEND_"


@dataclass(frozen=True)
class LaunchSettings:
    redis_url: str
    redis_prefix: str
    claim_idle: float
    base_env: Mapping[str, str]
    python: str = sys.executable
    stuck_grace: float | None = 5.0  # the runtime's --exit-when-stuck


def roles_of(desired: DesiredReplica) -> tuple[str, ...]:
    """The processes of a replica, in start order."""
    if desired.actor_name in RESERVED_ACTOR_NAMES:
        return (SIDECAR,)
    if desired.spec.execution is ExecutionMode.INPROCESS:
        return (SIDECAR,)
    return (RUNTIME, SIDECAR)


def runtime_source_root() -> Path:
    """The directory holding ``ai/`` of the ``ai.backend.runtime`` in use."""
    return Path(runtime_entry.__file__).resolve().parents[3]  # .../ai/backend/runtime/x.py


def _without_agent_variables(base_env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in base_env.items() if not k.startswith(AGENT_ENV_PREFIX)}


def runtime_command(desired: DesiredReplica, socket: Path, settings: LaunchSettings) -> list[str]:
    spec = desired.spec
    command = [spec.python or settings.python, "-m", "ai.backend.runtime"]
    command += ["--handler", spec.handler, "--socket", str(socket)]
    command += ["--concurrency", str(spec.concurrency)]
    if settings.stuck_grace is not None:
        command += ["--exit-when-stuck", f"{settings.stuck_grace:g}"]
    for path in spec.pythonpath:
        command += ["--pythonpath", path]
    return command


def runtime_environment(desired: DesiredReplica, settings: LaunchSettings) -> dict[str, str]:
    env = _without_agent_variables(settings.base_env)
    if desired.spec.python is not None:
        paths = [str(runtime_source_root())]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(desired.spec.env)
    env.update(desired.gpu_environment())
    return env


def sidecar_command(
    desired: DesiredReplica, paths: ReplicaPaths, socket: Path, settings: LaunchSettings
) -> list[str]:
    command = [settings.python, "-m", "ai.backend.cli", "sidecar", "run"]
    command += ["--actor", desired.actor_name, "--consumer", desired.replica_id]
    command += ["--config", str(paths.sidecar_config), "--status-file", str(paths.status)]
    if desired.actor_name in RESERVED_ACTOR_NAMES:
        return command
    command += ["--spec", str(paths.spec)]
    if desired.spec.execution is not ExecutionMode.INPROCESS:
        command += ["--socket", str(socket)]
    return command


def sidecar_environment(desired: DesiredReplica, settings: LaunchSettings) -> dict[str, str]:
    env = _without_agent_variables(settings.base_env)
    env["BACKEND_REDIS__URL"] = settings.redis_url
    env["BACKEND_REDIS__PREFIX"] = settings.redis_prefix
    env["BACKEND_SIDECAR__CLAIM_IDLE"] = f"{settings.claim_idle}s"
    if desired.actor_name not in RESERVED_ACTOR_NAMES and roles_of(desired) == (SIDECAR,):
        env.update(desired.gpu_environment())  # the in-process handler runs here
    return env
