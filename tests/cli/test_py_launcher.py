"""``./py`` started by several processes at once on a fresh clone prepares the environment once.

Each test runs a copy of ``./py`` beside a stand-in ``./pants`` whose ``export`` counts its runs,
waits until the test releases it, and then lays out an exported environment whose ``python`` is
this interpreter.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

LAUNCHER = Path("py")
WAITING = "[./py] waiting for another ./py that is preparing the Python environment"
PREPARING = "[./py] preparing the Python environment"

FAKE_PANTS = """#!/usr/bin/env bash
set -eu
cd "$(dirname "$0")"
echo run >> exports.log
while [[ ! -f release ]]; do sleep 0.01; done
if [[ -f fail-first ]]; then rm fail-first; echo "ExportError: simulated" >&2; exit 1; fi
mkdir -p dist/export/python/virtualenvs/python-default/3.11.7/bin
ln -sf {python} dist/export/python/virtualenvs/python-default/3.11.7/bin/python
"""


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A directory holding ``py``, ``python.lock`` and the stand-in ``pants``."""
    shutil.copy(LAUNCHER, tmp_path / "py")
    (tmp_path / "python.lock").write_text("{}\n")
    pants = tmp_path / "pants"
    pants.write_text(FAKE_PANTS.format(python=sys.executable))
    pants.chmod(0o755)
    return tmp_path


def start_launchers(clone: Path, count: int) -> list[tuple[subprocess.Popen[str], Path]]:
    started = []
    for i in range(count):
        stderr_path = clone / f"stderr-{i}"
        with open(stderr_path, "w") as stderr:
            process = subprocess.Popen(
                ["bash", str(clone / "py"), "-c", f"print('ok {i}')"],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        started.append((process, stderr_path))
    return started


def wait_for_lines(paths: list[Path], expected: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = sum(1 for p in paths if p.read_text().strip())
        if seen >= expected:
            return
        assert time.monotonic() < deadline, f"only {seen} of {expected} launchers spoke"
        time.sleep(0.01)


def test_five_launchers_at_once_export_once_and_all_run(clone: Path) -> None:
    launchers = start_launchers(clone, 5)
    wait_for_lines([path for _, path in launchers], expected=5)
    (clone / "release").touch()
    outputs = [(p.communicate(timeout=30)[0], p.returncode) for p, _ in launchers]
    assert outputs == [(f"ok {i}\n", 0) for i in range(5)]
    assert (clone / "exports.log").read_text() == "run\n"
    messages = sorted(path.read_text() for _, path in launchers)
    assert [m.splitlines() for m in messages] == [
        [PREPARING + " (./pants export --resolve=python-default, ~1 min the first time)"]
    ] + [[WAITING]] * 4


def test_a_failed_export_is_retried_by_a_waiting_launcher(clone: Path) -> None:
    (clone / "fail-first").touch()
    launchers = start_launchers(clone, 2)
    wait_for_lines([path for _, path in launchers], expected=2)
    (clone / "release").touch()
    results = {
        i: (p.communicate(timeout=30)[0], p.returncode) for i, (p, _) in enumerate(launchers)
    }
    # the first export failed and its launcher says why; the waiting one exported again and ran
    assert sorted(code for _, code in results.values()) == [0, 1]
    assert [out for out, code in results.values() if code == 0] in (["ok 0\n"], ["ok 1\n"])
    assert [out for out, code in results.values() if code == 1] == [""]
    assert (clone / "exports.log").read_text() == "run\nrun\n"
    failed_stderr = next(path.read_text() for p, path in launchers if p.returncode == 1)
    assert "ExportError: simulated" in failed_stderr


def test_a_prepared_environment_is_used_without_export(clone: Path) -> None:
    (clone / "release").touch()
    [(first, _)] = start_launchers(clone, 1)
    assert first.communicate(timeout=30) == ("ok 0\n", None)
    [(second, stderr_path)] = start_launchers(clone, 1)
    assert second.communicate(timeout=30) == ("ok 0\n", None)
    assert stderr_path.read_text() == ""
    assert (clone / "exports.log").read_text() == "run\n"
