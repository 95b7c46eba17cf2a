"""Run the platform's own entry points as child processes from inside a test sandbox.

Pants puts ``src`` on ``sys.path`` as a relative entry; a child gets the absolute form of the
test's ``sys.path`` so that it imports exactly the code and packages the test sees. (The test
module must import the entry point's module too, so that Pants puts it into the sandbox.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    paths = [os.path.abspath(p) for p in sys.path if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env.update(extra or {})
    return env


def run_module(
    module: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m module args…`` to completion, capturing text output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=child_environment(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
