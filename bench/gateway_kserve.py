"""The KServe part of bench/gateway.py: the same echo model behind the gateway
(``examples/specs/kserve-echo.yaml``) and behind kserve's own ``ModelServer``, the same client
and payload, one after the other.

kserve comes from the ``inference`` resolve (``./pants export --resolve=inference``, done here
when the venv is missing); the ModelServer runs as a small script under that venv's Python: one
process, REST only, logging off (``--configure_logging false``, no latency log, no access log),
as in reference/protocols.md §0 item 9.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ai.backend.testutils.services import free_port
from bench.gateway_load import (
    LoadResult,
    client_session,
    closed_loop,
    cpu_delta,
    cpu_of,
    descendants,
    percentiles,
    wait_http_ok,
)
from bench.gateway_stack import ECHO_MODEL, Stack

ROOT = Path(__file__).resolve().parent.parent
INFERENCE_VENVS = ROOT / "dist/export/python/virtualenvs/inference"
JSON_HEADERS = {"Content-Type": "application/json"}
INFER_BODY = orjson.dumps(
    {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": [1.0, 2.0, 3.0, 4.0]}]}
)


# --- kserve ModelServer ----------------------------------------------------------------------

MODEL_SERVER_SCRIPT = '''\
"""kserve ModelServer, one process, REST only, logging off: the no-op model "echo" answers
with its inputs (the same contract as examples/kserve_echo.py)."""
import logging
import uuid

from kserve import InferOutput, InferResponse, Model, ModelServer


class Echo(Model):
    def __init__(self) -> None:
        super().__init__("echo")
        self.ready = True

    async def predict(self, payload, headers=None, response_headers=None):
        outputs = [InferOutput(t.name, t.shape, t.datatype, t.data) for t in payload.inputs]
        return InferResponse(payload.id or str(uuid.uuid4()), self.name, outputs)


if __name__ == "__main__":
    logging.getLogger("uvicorn.access").disabled = True
    server = ModelServer(workers=1, enable_grpc=False, enable_latency_logging=False)
    server.start([Echo()])
'''


def inference_python(explicit: str | None) -> str:
    """The Python of the exported ``inference`` venv (exported first when missing)."""
    if explicit:
        return explicit

    def found() -> list[Path]:
        return sorted(INFERENCE_VENVS.glob("*/bin/python"))

    if not found():
        print("[bench] exporting the inference resolve (kserve) ...", file=sys.stderr)
        subprocess.run(
            ["./pants", "export", "--resolve=inference"],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    pythons = found()
    if not pythons:
        raise RuntimeError(f"no venv under {INFERENCE_VENVS} after the export")
    return str(pythons[-1])


def kserve_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "from importlib.metadata import version; print(version('kserve'))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip() or "?"


class ModelServerProcess:
    """kserve's ModelServer with the echo model on a port of its own."""

    def __init__(self, python: str, port: int, workdir: Path) -> None:
        self.python = python
        self.port = port
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        script = self.workdir / "kserve_model_server.py"
        script.write_text(MODEL_SERVER_SCRIPT)
        log = open(self.workdir / "kserve-model-server.log", "wb")
        args = ["--http_port", str(self.port), "--configure_logging", "false"]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not our packages
        self.process = subprocess.Popen(
            [self.python, str(script), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
        )
        log.close()
        if not await wait_http_ok(f"{self.url}/v2/models/echo/ready", timeout=60, alive=self.alive):
            tail = (self.workdir / "kserve-model-server.log").read_text(errors="replace")
            raise RuntimeError(f"kserve ModelServer did not become ready:\n{tail[-2000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pids(self) -> list[int]:
        return descendants(self.process.pid) if self.alive() and self.process else []

    def stop(self) -> None:
        if self.process is None:
            return
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the part ----------------------------------------------------------------------------------


async def check_echo(url: str) -> None:
    async with client_session(1) as session:
        async with session.post(url, data=INFER_BODY, headers=JSON_HEADERS) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"POST {url}: {response.status} {body[:300]!r}")
    outputs = orjson.loads(body)["outputs"]
    if outputs[0]["data"] != [1.0, 2.0, 3.0, 4.0]:
        raise RuntimeError(f"POST {url}: not an echo: {body[:300]!r}")


@dataclass
class Side:
    """One server under the same load, measured over the slices given to it."""

    name: str
    url: str
    pids: Callable[[], dict[str, list[int]]]
    load: LoadResult = field(default_factory=LoadResult)
    cpu: dict[str, float] = field(default_factory=dict)
    redis: float = 0.0
    client: float = 0.0

    async def run(self, stack: Stack, concurrency: int, seconds: float, *, count: bool) -> None:
        groups = self.pids()
        before, client_before = cpu_of(groups), time.process_time()
        redis_before = await stack.redis_cpu()
        async with client_session(concurrency) as session:
            measured = await closed_loop(
                session,
                self.url,
                lambda i: INFER_BODY,
                headers=JSON_HEADERS,
                concurrency=concurrency,
                duration=seconds,
            )
        if not count:  # warm-up
            return
        for name, used in cpu_delta(before, cpu_of(groups)).items():
            self.cpu[name] = self.cpu.get(name, 0.0) + used
        self.redis += await stack.redis_cpu() - redis_before
        self.client += time.process_time() - client_before
        self.load.requests += measured.requests
        self.load.errors += measured.errors
        self.load.elapsed += measured.elapsed
        self.load.latencies_ms += measured.latencies_ms
        self.load.first_error = self.load.first_error or measured.first_error

    def report(self) -> dict[str, Any]:
        n = max(self.load.requests, 1)
        result = {
            "requests": self.load.requests,
            "errors": self.load.errors,
            "req_per_s": round(self.load.requests / max(self.load.elapsed, 1e-9)),
            "latency_ms": percentiles(self.load.latencies_ms, (50, 99)),
            "server_cpu_ms_per_request": round(sum(self.cpu.values()) / n * 1000, 4),
            "cpu_ms_per_request": {k: round(v / n * 1000, 4) for k, v in self.cpu.items()},
            "redis_cpu_ms_per_request": round(self.redis / n * 1000, 4),
            "client_cpu_ms_per_request": round(self.client / n * 1000, 4),
        }
        if self.load.first_error:
            result["first_error"] = self.load.first_error
        return result


async def kserve(
    stack: Stack, server: ModelServerProcess, args: argparse.Namespace, run: int
) -> dict[str, Any]:
    """Both servers in turn, ``--kserve-slices`` slices of each (``--kserve-seconds`` in all
    per server), so that what else runs on the machine meanwhile hits both alike."""
    assert stack.gateway is not None
    sides = [
        Side(
            "gateway",
            f"{stack.gateway.url}/v2/models/{ECHO_MODEL}/infer",
            lambda: stack.pids("kserve-echo"),
        ),
        Side(
            "kserve_modelserver",
            f"{server.url}/v2/models/{ECHO_MODEL}/infer",
            lambda: {"modelserver": server.pids()},
        ),
    ]
    if run % 2:
        sides.reverse()
    concurrency, slices = args.kserve_concurrency, max(args.kserve_slices, 1)
    for side in sides:
        await side.run(stack, concurrency, 1.0, count=False)
    for _ in range(slices):
        for side in sides:
            await side.run(stack, concurrency, args.kserve_seconds / slices, count=True)
    result: dict[str, Any] = {"order": [side.name for side in sides], "slices": slices}
    result |= {side.name: side.report() for side in sides}
    ours, theirs = result["gateway"], result["kserve_modelserver"]
    result["ratio_to_kserve"] = round(ours["req_per_s"] / max(theirs["req_per_s"], 1), 3)
    result["cpu_per_request_ratio"] = round(
        ours["server_cpu_ms_per_request"] / max(theirs["server_cpu_ms_per_request"], 1e-9), 3
    )
    return result


async def start_model_server(
    stack: Stack, args: argparse.Namespace, report: dict[str, Any]
) -> ModelServerProcess:
    """kserve's ModelServer, once both sides answer the echo request as expected."""
    assert stack.gateway is not None
    if stack.kserve_error:
        raise RuntimeError(f"gateway: {stack.kserve_error}")
    await check_echo(f"{stack.gateway.url}/v2/models/{ECHO_MODEL}/infer")
    python = inference_python(args.kserve_python)
    report["machine"]["kserve"] = kserve_version(python)
    server = ModelServerProcess(python, free_port(), stack.workdir)
    try:
        await server.start()
        await check_echo(f"{server.url}/v2/models/{ECHO_MODEL}/infer")
    except BaseException:
        server.stop()
        raise
    return server
