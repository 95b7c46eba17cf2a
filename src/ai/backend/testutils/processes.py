"""Start the platform's processes (runtimes, sidecars) from tests and stop them afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import ai.backend.cli.__main__  # noqa: F401  (what the children run: Pants packs it with this)

from .spawn import child_environment

CLI_MODULE = "ai.backend.cli"


class ProcessFailed(AssertionError):
    """A child process exited while a test was waiting for it."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.alive():
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)


@dataclass
class ProcessGroup:
    """Children of one test, each logging to its own file under ``log_dir``."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        args: Sequence[str],
        module: str = CLI_MODULE,
        env: Mapping[str, str] | None = None,
    ) -> Child:
        """Start ``python -m module args…``; ``env`` adds to the group's environment."""
        log_path = self.log_dir / f"{name}-{len(self.children)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=child_environment({**self.env, **(env or {})}),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=os.getcwd(),
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def stop_all(self, grace: float = 5.0) -> None:
        for child in self.children:
            child.kill(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            try:
                child.process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                child.kill(signal.SIGKILL)
                child.process.wait()

    def logs(self) -> str:
        return "\n".join(f"===== {c.name} =====\n{c.log()}" for c in self.children)


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    watch: Sequence[Child] = (),
    interval: float = 0.02,
) -> None:
    """Poll ``condition`` until true; fail early if a watched child dies, and after
    ``timeout`` with ``what`` in the message."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        for child in watch:
            if not child.alive():
                raise ProcessFailed(
                    f"{child.name} exited ({child.process.returncode}) while "
                    f"waiting for {what}:\n{child.log()}"
                )
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
