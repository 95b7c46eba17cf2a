"""Benchmark: a 3-actor no-op pipeline in both execution modes vs. a minimal Redis Streams relay.

    ./py bench/pipeline.py [--repeat 3] [--envelopes 20000] [--latency-envelopes 2000]
    ./py bench/pipeline.py --sustain 60 [--rate 1000]

Three systems get the same workload on the local Redis, one replica (or relay) per hop:
* ``default``: a runtime process and a sidecar per actor, and the crew (``happy-end``);
* ``inprocess``: a sidecar per actor running the handler itself (``execution: inprocess``), and
  the crew;
* ``floor``: a minimal hand-written relay per hop (bench/relay.py): no runtime, no validation, no
  retries, no job accounting; the last one writes the ``succeeded`` event.

Each run measures:
* throughput: N envelopes published in pipelined batches as fast as possible; envelopes/s from
  the first publish to the last terminal event read by the client, and the CPU time each
  process (Redis included) spent meanwhile, in µs per envelope (each process serves one hop);
* latency: envelopes published one at a time with a pause between them (an unloaded system);
  per-envelope end-to-end latency = terminal event read by the client - publish.

``--repeat N`` runs the three systems in turn N times and reports each figure's median (the
runs themselves under ``runs``). ``--sustain SECONDS`` instead runs a steady load of ``--rate``
envelopes/s through the default and in-process systems and reports every process's resident
memory at the start, every 10 s, and at the end. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
ACTORS = ["bench-a", "bench-b", "bench-c"]
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
SYSTEMS = ("default", "inprocess", "floor")
RSS_SAMPLE_EVERY = 10.0


def envelope_bytes(job_id: str, route: list[str]) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "id": uuid.uuid4().hex,
            "job_id": job_id,
            "route": {"actors": route, "current": 0},
            "payload": {"n": 1},
            "headers": {},
            "created_at": "2026-11-24T00:00:00Z",
        }
    )


def _proc_stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


class Processes:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")
        profile_dir = os.environ.get("BENCH_PROFILE")  # where the time goes: cProfile per process
        if profile_dir and args[0] == "-m":
            args = ["-m", "cProfile", "-o", f"{profile_dir}/{name}.prof", *args]
        self.children[name] = subprocess.Popen(
            [sys.executable, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each child used so far, from /proc."""
        ticks = os.sysconf("SC_CLK_TCK")
        usage = {}
        for name, child in self.children.items():
            try:
                fields = _proc_stat(child.pid)
            except FileNotFoundError:
                continue
            usage[name] = (int(fields[11]) + int(fields[12])) / ticks
        return usage

    def rss_mb(self) -> dict[str, float]:
        usage = {}
        for name, child in self.children.items():
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
            except FileNotFoundError:
                continue
            kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
            usage[name] = round(kib / 1024, 1)
        return usage

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                log = (self.log_dir / f"{name}.log").read_text()[-2000:]
                raise RuntimeError(f"{name} exited ({child.returncode}):\n{log}")

    def stop(self) -> None:
        for child in self.children.values():
            child.terminate()
        for child in self.children.values():
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


async def redis_cpu_seconds(redis: Redis) -> float:
    info: Any = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def wait_for_consumers(
    redis: Redis, prefix: str, queues: list[str], processes: Processes, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    for queue in queues:
        while True:
            try:
                if await redis.xinfo_consumers(f"{prefix}actor:{queue}", queue):
                    break
            except Exception:
                pass
            processes.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue} has no consumer after {timeout} s")
            await asyncio.sleep(0.05)


class Client:
    """Publishes envelopes to the first hop and reads their terminal events."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.stream = f"{prefix}actor:{ACTORS[0]}"
        self.events = f"{prefix}events"

    async def events_start(self) -> Any:
        """Where this run's events start ("$" would miss events written before the first
        XREAD)."""
        if await self.redis.exists(self.events):
            info: Any = await self.redis.xinfo_stream(self.events)
            return info["last-generated-id"]
        return b"0-0"

    async def run(
        self, n: int, *, batch: int, pause: float, deadline_s: float
    ) -> tuple[float, list[float]]:
        """Publish ``n`` envelopes (``batch`` per pipeline, ``pause`` s between pipelines) and
        wait for their ends; (elapsed s, latencies in ms)."""
        last_id = await self.events_start()
        run = uuid.uuid4().hex[:8]
        sent_at: dict[str, float] = {}
        latencies: list[float] = []

        async def publish() -> None:
            next_at = time.monotonic()
            for start in range(0, n, batch):
                ids = [f"{run}-{i}" for i in range(start, min(start + batch, n))]
                async with self.redis.pipeline(transaction=False) as pipe:
                    for job_id in ids:
                        pipe.xadd(self.stream, {b"e": envelope_bytes(job_id, ACTORS)})
                    now = time.perf_counter()
                    for job_id in ids:
                        sent_at[job_id] = now
                    await pipe.execute()
                if pause:  # the load's pace, on a schedule
                    next_at += pause
                    await asyncio.sleep(max(next_at - time.monotonic(), 0))

        reader = Redis.from_url(REDIS_URL)
        started = time.perf_counter()
        publisher = asyncio.create_task(publish())
        deadline = time.monotonic() + deadline_s
        try:
            while len(latencies) < n:
                response: Any = await reader.xread({self.events: last_id}, count=1000, block=1000)
                if not response and time.monotonic() > deadline:
                    raise TimeoutError(f"only {len(latencies)} of {n} envelopes finished")
                now = time.perf_counter()
                for _stream, entries in response:
                    for entry_id, fields in entries:
                        last_id = entry_id
                        event = orjson.loads(fields[b"ev"])
                        job_id = event.get("job_id", "")
                        if event.get("kind") == "succeeded" and job_id.startswith(run):
                            latencies.append((now - sent_at[job_id]) * 1000)
            elapsed = time.perf_counter() - started
            await publisher
        finally:
            publisher.cancel()
            await reader.aclose()
        return elapsed, latencies


def percentiles(latencies: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(latencies, n=100)
    return {"p50": round(qs[49], 3), "p95": round(qs[94], 3), "p99": round(qs[98], 3)}


class System:
    """One system's processes on a key prefix of their own, started and cleaned up."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = f"bench:{uuid.uuid4().hex[:8]}:"
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "BACKEND_REDIS__PREFIX": self.prefix,
            "BACKEND_LOGGING__LEVEL": "WARNING",
        }
        self.processes = Processes(env, self.log_dir)
        self.redis = Redis.from_url(REDIS_URL)
        self.client = Client(self.redis, self.prefix)

    async def __aenter__(self) -> System:
        queues = STARTERS[self.name](self.processes, self.prefix, self.log_dir)
        await wait_for_consumers(self.redis, self.prefix, queues, self.processes)
        await self.client.run(500, batch=100, pause=0, deadline_s=60)  # warm-up
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.processes.stop()
        keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}*", count=1000)]
        if keys:
            await self.redis.delete(*keys)
        await self.redis.aclose()
        if not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(self.log_dir, ignore_errors=True)

    async def measure(self, args: argparse.Namespace) -> dict[str, Any]:
        n = args.envelopes
        cpu_before = self.processes.cpu_seconds()
        redis_before = await redis_cpu_seconds(self.redis)
        elapsed, _ = await self.client.run(n, batch=args.batch, pause=0, deadline_s=60 + n / 500)
        redis_cpu = await redis_cpu_seconds(self.redis) - redis_before
        cpu_after = self.processes.cpu_seconds()
        cpu_us = {
            name: round((cpu_after[name] - cpu_before.get(name, 0.0)) / n * 1e6, 1)
            for name in cpu_after
        }
        cpu_us["redis-server"] = round(redis_cpu / n * 1e6, 1)
        _, latencies = await self.client.run(
            args.latency_envelopes, batch=1, pause=0.004, deadline_s=120
        )
        return {
            "envelopes_per_s": round(n / elapsed),
            "latency_ms": percentiles(latencies),
            "cpu_us_per_envelope_per_hop": cpu_us,
            "processes": len(self.processes.children),
        }

    async def sustain(self, seconds: float, rate: int) -> dict[str, Any]:
        """A steady ``rate`` for ``seconds``; each process's RSS (MB) sampled along the way."""
        batch = max(rate // 100, 1)  # 100 pipelines a second
        n = int(seconds * rate)
        samples: list[dict[str, float]] = [self.processes.rss_mb()]

        async def sample() -> None:
            while True:
                await asyncio.sleep(RSS_SAMPLE_EVERY)
                samples.append(self.processes.rss_mb())

        sampler = asyncio.create_task(sample())
        try:
            elapsed, latencies = await self.client.run(
                n, batch=batch, pause=batch / rate, deadline_s=seconds + 120
            )
        finally:
            sampler.cancel()
        samples.append(self.processes.rss_mb())
        return {
            "seconds": round(elapsed, 1),
            "rate": rate,
            "rate_achieved": round(n / elapsed),
            "envelopes": n,
            "finished": len(latencies),
            "latency_ms": percentiles(latencies),
            "rss_mb": {
                name: {
                    "start": samples[0][name],
                    "end": samples[-1][name],
                    "max": max(s.get(name, 0.0) for s in samples),
                    "samples": [s.get(name) for s in samples],
                }
                for name in samples[0]
            },
        }


def _module(*args: str) -> list[str]:
    return ["-m", "ai.backend.cli", *args]


def start_platform(execution: str, concurrency: int, handler: str) -> Starter:
    def start(processes: Processes, prefix: str, workdir: Path) -> list[str]:
        for actor in ACTORS:
            socket_path = workdir / f"{actor}.sock"
            config = workdir / f"{actor}.toml"
            config.write_text(
                f'[actor]\nname = "{actor}"\nhandler = "{handler}"\n'
                f'concurrency = {concurrency}\nexecution = "{execution}"\n'
            )
            sidecar = _module("sidecar", "run", "--actor", actor, "--config", str(config))
            if execution == "runtime":
                processes.start(
                    f"runtime-{actor}",
                    _module(
                        "runtime",
                        "run",
                        "--handler",
                        handler,
                        "--socket",
                        str(socket_path),
                        "--concurrency",
                        str(concurrency),
                        "--log-level",
                        "WARNING",
                    ),
                )
                sidecar += ["--socket", str(socket_path)]
            processes.start(f"sidecar-{actor}", sidecar)
        processes.start("happy-end", _module("sidecar", "run", "--actor", "happy-end"))
        return [*ACTORS, "happy-end"]

    return start


def start_floor(processes: Processes, prefix: str, workdir: Path) -> list[str]:
    hops = [*ACTORS, "bench-end"]
    for inbox, outbox in zip(hops, hops[1:], strict=False):
        processes.start(
            f"relay-{inbox}",
            ["bench/relay.py", "--prefix", prefix, "--inbox", inbox, "--outbox", outbox],
        )
    processes.start(
        "relay-end", ["bench/relay.py", "--prefix", prefix, "--inbox", "bench-end", "--events"]
    )
    return hops


Starter = Callable[[Processes, str, Path], list[str]]
STARTERS: dict[str, Starter] = {}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs (nested dictionaries figure by figure)."""
    first = runs[0]
    merged: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            merged[key] = median_of([run[key] for run in runs])
        else:
            merged[key] = statistics.median(run[key] for run in runs)
    return merged


def ratios(system: dict[str, Any], floor: dict[str, Any]) -> dict[str, float]:
    """How far a system is from the floor: > 1 is worse (floor's throughput / the system's)."""
    return {
        "throughput": round(floor["envelopes_per_s"] / system["envelopes_per_s"], 2),
        "p50": round(system["latency_ms"]["p50"] / floor["latency_ms"]["p50"], 2),
        "p99": round(system["latency_ms"]["p99"] / floor["latency_ms"]["p99"], 2),
    }


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    systems = [name for name in SYSTEMS if name in args.systems]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for _ in range(args.repeat):
        for name in systems:
            async with System(name) as system:
                runs[name].append(await system.measure(args))
    result: dict[str, Any] = {name: median_of(runs[name]) for name in systems}
    if "floor" in result:
        result["ratio_to_floor"] = {
            name: ratios(result[name], result["floor"]) for name in systems if name != "floor"
        }
    result["runs"] = {
        name: [
            {"envelopes_per_s": r["envelopes_per_s"], "p50": r["latency_ms"]["p50"]}
            for r in runs[name]
        ]
        for name in systems
    }
    return result


async def sustain(args: argparse.Namespace) -> dict[str, Any]:
    report = {}
    for name in ("default", "inprocess"):
        if name not in args.systems:
            continue
        async with System(name) as system:
            report[name] = await system.sustain(args.sustain, args.rate)
    return {"sustain": report}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1, help="runs of each system; medians")
    parser.add_argument("--envelopes", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--latency-envelopes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--handler", default="examples.pipeline:noop", help="the hops' handler (sync no-op)"
    )
    parser.add_argument(
        "--systems",
        type=lambda text: text.split(","),
        default=list(SYSTEMS),
        help="a comma-separated subset of default,inprocess,floor",
    )
    parser.add_argument("--sustain", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--rate", type=int, default=1000, help="envelopes/s under --sustain")
    args = parser.parse_args()
    STARTERS["default"] = start_platform("runtime", args.concurrency, args.handler)
    STARTERS["inprocess"] = start_platform("inprocess", args.concurrency, args.handler)
    STARTERS["floor"] = start_floor
    workload = {
        "actors": len(ACTORS),
        "concurrency": args.concurrency,
        "handler": args.handler,
        "cpus": os.cpu_count(),
    }
    if args.sustain is not None:
        report = await sustain(args)
    else:
        workload |= {
            "envelopes": args.envelopes,
            "batch": args.batch,
            "latency_envelopes": args.latency_envelopes,
            "repeat": args.repeat,
        }
        report = await benchmark(args)
    print(json.dumps({"workload": workload, **report}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
