"""Bring your own virtual environment. The spec's ``python:`` names the interpreter that runs
the actor's runtime process (your handler): a venv with your model's packages, of any Python
≥ 3.11, that has none of the platform's packages (the runtime needs only the standard library;
the agent puts its own source on the runtime's ``PYTHONPATH``). From the repository root::

    python3 -m venv examples/byo_venv/.venv
    examples/byo_venv/.venv/bin/pip install numpy          # whatever your handler needs
    ./backend.ai actor apply -f examples/byo_venv/venv-probe.yaml
    ./backend.ai job run venv_info --arg 'packages=["numpy"]' --follow

The answer names the interpreter (``examples/byo_venv/.venv/bin/python``), says it runs in a
venv, and gives the version of each package asked for as that venv sees it (``null`` when it
is not installed there). A relative ``python:`` is resolved against the spec file's folder, like
``pythonpath``; the path must exist on every agent the actor may be placed on.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any


def describe_interpreter(payload: dict[str, Any]) -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for name in payload.get("packages", []):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "executable": sys.executable,
        "prefix": sys.prefix,
        "in_venv": sys.prefix != sys.base_prefix,
        "python_version": platform.python_version(),
        "packages": packages,
    }
