"""Benchmark: a 3-actor no-op pipeline on the platform vs. a minimal Redis Streams relay.

    ./py bench/pipeline.py [--envelopes 20000] [--batch 200] [--latency-envelopes 2000]

Both systems get the same workload on the local Redis, one replica (or relay) per hop:
* throughput: N envelopes published in pipelined batches as fast as possible; envelopes/s from
  the first publish to the last terminal event read by the client;
* latency: envelopes published one at a time with a pause between them (an unloaded system);
  per-envelope end-to-end latency = terminal event read by the client - publish.
Prints one JSON object.
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


class Processes:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.children: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")
        profile_dir = os.environ.get("BENCH_PROFILE")  # where the time goes: cProfile per process
        if profile_dir and args[0] == "-m":
            args = ["-m", "cProfile", "-o", f"{profile_dir}/{name}.prof", *args]
        self.names.append(name)
        self.children.append(
            subprocess.Popen(
                [sys.executable, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        )

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each child used so far, from /proc."""
        ticks = os.sysconf("SC_CLK_TCK")
        usage = {}
        for name, child in zip(self.names, self.children, strict=True):
            try:
                fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            usage[name] = round((int(fields[11]) + int(fields[12])) / ticks, 2)
        return usage

    def stop(self) -> None:
        for child in self.children:
            child.terminate()
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


async def wait_for_consumers(
    redis: Redis, prefix: str, queues: list[str], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    for queue in queues:
        while True:
            try:
                if await redis.xinfo_consumers(f"{prefix}actor:{queue}", queue):
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue} has no consumer after {timeout} s")
            await asyncio.sleep(0.05)


async def measure(
    redis: Redis, prefix: str, first_queue: str, route: list[str], n: int, batch: int, paced: bool
) -> tuple[float, list[float]]:
    """Publish ``n`` envelopes and read their terminal events; (elapsed s, latencies in ms)."""
    events = f"{prefix}events"
    stream = f"{prefix}actor:{first_queue}"
    # where this run's events start ("$" would miss events written before the first XREAD)
    last_id: Any = b"0-0"
    if await redis.exists(events):
        info: Any = await redis.xinfo_stream(events)
        last_id = info["last-generated-id"]
    run = uuid.uuid4().hex[:8]
    sent_at: dict[str, float] = {}
    latencies: list[float] = []

    async def publish() -> None:
        for start in range(0, n, batch if not paced else 1):
            ids = [f"{run}-{i}" for i in range(start, min(start + (batch if not paced else 1), n))]
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.xadd(stream, {b"e": envelope_bytes(job_id, route)})
                now = time.perf_counter()
                for job_id in ids:
                    sent_at[job_id] = now
                await pipe.execute()
            if paced:
                await asyncio.sleep(0.004)

    reader = Redis.from_url(os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    started = time.perf_counter()
    publisher = asyncio.create_task(publish())
    done = 0
    deadline = time.monotonic() + 60 + n / 500
    while done < n:
        response: Any = await reader.xread({events: last_id}, count=1000, block=1000)
        if not response and time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {n} envelopes finished")
        now = time.perf_counter()
        for _stream, entries in response:
            for entry_id, fields in entries:
                last_id = entry_id
                event = orjson.loads(fields[b"ev"])
                job_id = event.get("job_id", "")
                if event.get("kind") == "succeeded" and job_id.startswith(run):
                    done += 1
                    latencies.append((now - sent_at[job_id]) * 1000)
    elapsed = time.perf_counter() - started
    await publisher
    await reader.aclose()
    return elapsed, latencies


def summary(elapsed: float, n: int, latencies: list[float]) -> dict[str, Any]:
    qs = statistics.quantiles(latencies, n=100)
    return {
        "envelopes_per_s": round(n / elapsed),
        "latency_ms": {"p50": round(qs[49], 3), "p95": round(qs[94], 3), "p99": round(qs[98], 3)},
    }


async def run_system(
    name: str, start: Callable[[Processes, str], list[str]], args: argparse.Namespace
) -> dict[str, Any]:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "BACKEND_REDIS__PREFIX": prefix,
        "BACKEND_LOGGING__LEVEL": "WARNING",
    }
    processes = Processes(env, log_dir)
    redis = Redis.from_url(os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    try:
        queues = start(processes, prefix)
        await wait_for_consumers(redis, prefix, queues)
        # warm-up, then the measured runs
        await measure(redis, prefix, ACTORS[0], ACTORS, 200, args.batch, paced=False)
        elapsed, _ = await measure(
            redis, prefix, ACTORS[0], ACTORS, args.envelopes, args.batch, paced=False
        )
        throughput = round(args.envelopes / elapsed)
        lat_elapsed, latencies = await measure(
            redis, prefix, ACTORS[0], ACTORS, args.latency_envelopes, 1, paced=True
        )
        result = summary(lat_elapsed, args.latency_envelopes, latencies)
        result["envelopes_per_s"] = throughput
        result["cpu_seconds"] = processes.cpu_seconds()
        return result
    finally:
        processes.stop()
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        if not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(log_dir, ignore_errors=True)


def start_platform(concurrency: int, handler: str) -> Callable[[Processes, str], list[str]]:
    def start(processes: Processes, prefix: str) -> list[str]:
        sockets = Path(tempfile.mkdtemp(prefix="bench-sockets-"))
        for actor in ACTORS:
            socket_path = sockets / f"{actor}.sock"
            processes.start(
                f"runtime-{actor}",
                [
                    "-m",
                    "ai.backend.cli",
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
                ],
            )
            config = sockets / f"{actor}.toml"
            config.write_text(
                f'[actor]\nname = "{actor}"\nhandler = "{handler}"\n'
                f"concurrency = {concurrency}\n"
            )
            processes.start(
                f"sidecar-{actor}",
                [
                    "-m",
                    "ai.backend.cli",
                    "sidecar",
                    "run",
                    "--actor",
                    actor,
                    "--socket",
                    str(socket_path),
                    "--config",
                    str(config),
                ],
            )
        processes.start(
            "happy-end", ["-m", "ai.backend.cli", "sidecar", "run", "--actor", "happy-end"]
        )
        return [*ACTORS, "happy-end"]

    return start


def start_floor(processes: Processes, prefix: str) -> list[str]:
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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envelopes", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--latency-envelopes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--handler", default="examples.pipeline:noop", help="the hops' handler (sync no-op)"
    )
    args = parser.parse_args()
    platform = await run_system("platform", start_platform(args.concurrency, args.handler), args)
    floor = await run_system("floor", start_floor, args)
    print(
        json.dumps(
            {
                "workload": {
                    "actors": len(ACTORS),
                    "envelopes": args.envelopes,
                    "batch": args.batch,
                    "latency_envelopes": args.latency_envelopes,
                    "concurrency": args.concurrency,
                    "handler": args.handler,
                    "cpus": os.cpu_count(),
                },
                "platform": platform,
                "floor": floor,
                "ratio_to_floor": {
                    "throughput": round(floor["envelopes_per_s"] / platform["envelopes_per_s"], 2),
                    "p50": round(platform["latency_ms"]["p50"] / floor["latency_ms"]["p50"], 2),
                    "p99": round(platform["latency_ms"]["p99"] / floor["latency_ms"]["p99"], 2),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
