"""The KServe echo model under its first name, ``examples.kserve_echo:app`` (used by the tests,
the benchmarks and ``examples/specs/kserve-echo.yaml``): the model of ``examples/kserve/app.py``."""

from __future__ import annotations

from examples.kserve.app import app, echo

__all__ = ["app", "echo"]
