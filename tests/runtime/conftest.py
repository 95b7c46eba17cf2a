from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import examples.failures  # noqa: F401  (handlers the children load)
import examples.models  # noqa: F401
import examples.pipeline  # noqa: F401
import examples.stateful  # noqa: F401
import examples.streaming  # noqa: F401
import pytest

import ai.backend.runtime.cli  # noqa: F401  (the children run `backend.ai runtime run`)
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.runtime import RuntimeLauncher


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path, env={"HOME": "/nonexistent-home"})
    yield group
    group.stop_all()


@pytest.fixture
def runtimes(processes: ProcessGroup, tmp_path: Path) -> RuntimeLauncher:
    return RuntimeLauncher(processes, tmp_path)
