"""A Redis server of a test's own, on a free port, with the append-only file on (``everysec``),
that the test may pause, stop and start again without touching the machine's Redis."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .services import free_port


@dataclass
class PrivateRedis:
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "redis.log", "ab")
        self.process = subprocess.Popen(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--protected-mode", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited: {(self.data_dir / 'redis.log').read_text()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not answer")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                # ready: the append-only file is loaded and the server accepts commands
                return bool(client.ping()) and client.info("persistence")["loading"] == 0
        except redis.RedisError:
            return False

    def stop(self, timeout: float = 10) -> None:
        """Shut down gracefully (SIGTERM: the append-only file is flushed and synced)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def pause(self, seconds: float) -> None:
        """Every client's commands wait ``seconds`` (CLIENT PAUSE … ALL)."""
        with redis.Redis(port=self.port) as client:
            client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")
