"""Benchmark: the gateway's three ingresses on a 1-replica no-op actor (DESIGN.md §10).

    ./py bench/gateway.py [--repeat 3] [--only rest_jobs,kserve,mcp] [--jobs 10000]
                          [--execution runtime|inprocess]

One platform of real processes (bench/gateway_stack.py: manager, agent, crew, the actors
``noop`` = ``examples.pipeline:noop`` with 1 replica and ``kserve-echo`` =
``examples/specs/kserve-echo.yaml``, and a gateway with ``auth.mode = none``) on a database and
Redis key prefix of its own, removed at the end (also on Ctrl-C / SIGTERM). Parts:

* ``rest_jobs``: ``--jobs`` × ``POST /v1/jobs {"route": ["noop"], "arguments": {...}}`` from
  ``--client-concurrency`` workers over keep-alive connections (each waits for its 202), then
  until the gateway's ``jobs`` table holds no open job. ``jobs_per_s`` = succeeded jobs / (last
  ``updated_at`` of a succeeded job − first ``created_at``), both PostgreSQL ``now()`` of the
  writing transactions (the insert's group commit; the terminal event's update);
  ``latency_ms`` = percentiles of ``updated_at − created_at`` per succeeded job;
  ``jobs_per_s_client``: from the first POST sent to the poll (every 0.1 s) that saw no open
  job; ``posts_per_s`` / ``post_latency_ms``: the POSTs alone. CPU µs per job of each process
  on the path (gateway, the actor's runtime and sidecar, ``happy-end``, the PostgreSQL
  backends of the bench database, redis-server) and of this client.
* ``kserve``: ``POST /v2/models/echo/infer`` (one FP32[4] input, JSON) at
  ``--kserve-concurrency`` for ``--kserve-seconds`` per server (after 1 s of warm-up) against
  the gateway (→ ``kserve-echo`` actor → back) and against kserve's own ``ModelServer`` serving
  the same echo model (bench/gateway_kserve.py; one process, REST only, logging off), same
  client, same payload, in turn within each run: ``--kserve-slices`` alternating slices each,
  so that other load on the machine hits both alike (who starts alternates between runs).
  Server CPU per request
  from /proc/<pid>/stat: gateway + the actor's sidecar + runtime (no crew on this path: replies
  skip events), vs. the ModelServer's process tree; Redis' CPU is shown apart.
  ``ratio_to_kserve`` = our req/s ÷ the ModelServer's (per run; the median over runs).
* ``mcp``: ``--mcp-calls`` sequential ``tools/call`` of the tool ``noop`` (route ``[noop]``,
  ``wait: 30s``) in the 2026-07-28 era without a progressToken (the JSON, wait path) on one
  keep-alive connection of a plain aiohttp client; round-trip percentiles, CPU ms per call of
  each process, and ``stages_ms``: medians from the database of insert → the sidecar's
  ``running`` event → ``happy-end``'s ``succeeded`` event → the gateway storing it.

``--repeat N`` runs each part N times on the same platform (after one warm-up per part) and
reports each figure's median; the runs under ``runs``. Progress goes to stderr; stdout gets one
JSON document. Keep the machine otherwise quiet: the client shares the 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.*` under ./py
from bench.gateway_kserve import (  # noqa: E402
    INFER_BODY,
    ModelServerProcess,
    kserve,
    start_model_server,
)
from bench.gateway_load import (  # noqa: E402
    client_session,
    closed_loop,
    cpu_delta,
    cpu_of,
    median_of,
    percentiles,
)
from bench.gateway_stack import NOOP, Stack, log  # noqa: E402

PARTS = ("rest_jobs", "kserve", "mcp")
TARGETS = {"rest_jobs_per_s": 2000, "kserve_ratio": 2.0, "mcp_p50_ms": 5}
JSON_HEADERS = {"Content-Type": "application/json"}
MCP_VERSION = "2026-07-28"
MCP_META = {
    "io.modelcontextprotocol/protocolVersion": MCP_VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
}


def per_unit(seconds: dict[str, float], units: int, scale: float) -> dict[str, float]:
    return {name: round(value / max(units, 1) * scale, 2) for name, value in seconds.items()}


# --- REST jobs -------------------------------------------------------------------------------


async def post_jobs(stack: Stack, count: int, concurrency: int) -> tuple[Any, list[str]]:
    assert stack.gateway is not None
    run = uuid.uuid4().hex[:8]
    ids: list[str] = []

    def body(i: int) -> bytes:
        return orjson.dumps({"route": [NOOP], "arguments": {"run": run, "i": i}})

    def check(i: int, status: int, data: bytes) -> bool:
        if status != 202:
            return False
        ids.append(orjson.loads(data)["job_id"])
        return True

    async with client_session(concurrency) as session:
        load = await closed_loop(
            session,
            f"{stack.gateway.url}/v1/jobs",
            body,
            headers=JSON_HEADERS,
            concurrency=concurrency,
            count=count,
            check=check,
        )
    return load, ids


async def wait_no_open_jobs(stack: Stack, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while await stack.open_jobs():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def rest_jobs(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    n = args.jobs
    groups = stack.pids(NOOP, "happy-end")
    groups["postgres"] = await stack.postgres_backends()
    before, client_before = cpu_of(groups), time.process_time()
    redis_before = await stack.redis_cpu()
    started = time.time()
    load, ids = await post_jobs(stack, n, args.client_concurrency)
    finished = await wait_no_open_jobs(stack, timeout=60 + n / 100)
    ended = time.time()
    cpu = cpu_delta(before, cpu_of(groups))
    cpu["redis-server"] = await stack.redis_cpu() - redis_before
    cpu["client"] = time.process_time() - client_before
    rows = await stack.job_rows(ids)
    done = [row for row in rows if row.status == "succeeded"]
    result: dict[str, Any] = {
        "jobs": n,
        "succeeded": len(done),
        "failed": sum(row.status == "failed" for row in rows),
        "unfinished": sum(row.status in ("pending", "running") for row in rows),
        "post_errors": load.errors,
        "all_ended": finished,
    }
    if load.first_error:
        result["first_post_error"] = load.first_error
    if not done:
        return result
    first = min(row.created_at for row in rows)
    span = (max(row.updated_at for row in done) - first).total_seconds()
    latencies = [(row.updated_at - row.created_at).total_seconds() * 1000 for row in done]
    return result | {
        "jobs_per_s": round(len(done) / span),
        "span_s": round(span, 3),
        "jobs_per_s_client": round(len(done) / (ended - started)),
        "posts_per_s": round(load.requests / load.elapsed),
        "post_latency_ms": percentiles(load.latencies_ms),
        "latency_ms": percentiles(latencies),
        "cpu_us_per_job": per_unit(cpu, len(done), 1e6),
    }


# --- MCP -------------------------------------------------------------------------------------


async def mcp(stack: Stack, calls: int) -> dict[str, Any]:
    assert stack.gateway is not None
    headers = {
        **JSON_HEADERS,
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MCP_VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": NOOP,
    }

    def body(i: int) -> bytes:
        params = {"name": NOOP, "arguments": {"value": i}, "_meta": MCP_META}
        message = {"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": params}
        return orjson.dumps(message)

    def check(i: int, status: int, data: bytes) -> bool:
        if status != 200:
            return False
        result = orjson.loads(data).get("result") or {}
        return not result.get("isError") and result.get("structuredContent") == {"value": i}

    groups = stack.pids(NOOP, "happy-end")
    groups["postgres"] = await stack.postgres_backends()
    before, redis_before = cpu_of(groups), await stack.redis_cpu()
    started = time.time()
    async with client_session(1) as session:
        load = await closed_loop(
            session,
            f"{stack.gateway.url}/mcp",
            body,
            headers=headers,
            concurrency=1,
            count=calls,
            check=check,
        )
    cpu = cpu_delta(before, cpu_of(groups))
    cpu["redis-server"] = await stack.redis_cpu() - redis_before
    result: dict[str, Any] = {"calls": calls, "ok": load.requests, "errors": load.errors}
    if load.first_error:
        result["first_error"] = load.first_error
    if load.latencies_ms:
        latency = percentiles(load.latencies_ms)
        mean = sum(load.latencies_ms) / len(load.latencies_ms)
        result |= {"p50_ms": latency["p50"], "latency_ms": latency, "mean_ms": round(mean, 3)}
        result["stages_ms"] = await stages(stack, started)
        result["cpu_ms_per_call"] = per_unit(cpu, load.requests, 1e3)
    return result


async def stages(stack: Stack, since: float) -> dict[str, float]:
    """Medians over the calls' jobs, from the database: insert → the sidecar's ``running``
    event → ``happy-end``'s ``succeeded`` event (→ its arrival in the events stream) → the gateway
    storing it (the answer follows)."""
    rows = await stack.job_stages(NOOP, since)
    steps = {
        "created_to_running": ("created", "running"),
        "running_to_succeeded": ("running", "succeeded"),
        "succeeded_to_stored": ("succeeded", "stored"),
        "succeeded_to_added": ("succeeded", "added"),
        "added_to_stored": ("added", "stored"),
    }
    return (
        {
            name: round(
                statistics.median(float(getattr(r, b) - getattr(r, a)) * 1000 for r in rows), 2
            )
            for name, (a, b) in steps.items()
        }
        if rows
        else {}
    )


# --- the runs --------------------------------------------------------------------------------


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [run for run in runs if "error" not in run]
    if not good:
        return {"error": runs[0]["error"], "runs": runs}
    return {**median_of(good), "runs": runs}


async def run_part(name: str, work: Any) -> dict[str, Any]:
    log(f"{name} ...")
    try:
        result: dict[str, Any] = await work
    except (RuntimeError, AssertionError, KeyError, ValueError) as e:  # report, go on
        result = {"error": f"{type(e).__name__}: {e}"[:1000]}
    log(f"{name}: {json.dumps(result)[:300]}")
    return result


async def benchmark(args: argparse.Namespace, report: dict[str, Any]) -> None:
    parts = [part for part in PARTS if part in args.only]
    server: ModelServerProcess | None = None
    async with Stack(actor_concurrency=args.actor_concurrency, execution=args.execution) as stack:
        report["workload"]["gateway_keypair_role"] = stack.gateway_keypair_role
        runs: dict[str, list[dict[str, Any]]] = {part: [] for part in parts}
        try:
            if "kserve" in parts:
                try:
                    server = await start_model_server(stack, args, report)
                except (RuntimeError, OSError, KeyError, ValueError) as e:
                    runs["kserve"] = [{"error": f"{type(e).__name__}: {e}"[:2000]}]
                    parts.remove("kserve")
            if "rest_jobs" in parts:  # warm-up: connections, pools, code paths
                await post_jobs(stack, min(500, args.jobs), args.client_concurrency)
                await wait_no_open_jobs(stack, timeout=60)
            if "mcp" in parts:
                await mcp(stack, 20)
            for run in range(args.repeat):
                for part in parts:
                    if part == "rest_jobs":
                        work = rest_jobs(stack, args)
                    elif part == "kserve":
                        assert server is not None
                        work = kserve(stack, server, args, run)
                    else:
                        work = mcp(stack, args.mcp_calls)
                    runs[part].append(await run_part(f"{part} run {run + 1}", work))
        finally:
            if server is not None:
                server.stop()
    for part, part_runs in runs.items():
        report[part] = summary(part_runs)


def verdicts(report: dict[str, Any]) -> dict[str, bool | None]:
    def figure(part: str, *path: str) -> Any:
        value = report.get(part, {})
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    rest = figure("rest_jobs", "jobs_per_s")
    ratio = figure("kserve", "ratio_to_kserve")
    p50 = figure("mcp", "p50_ms")
    return {
        "rest_jobs_per_s": None if rest is None else rest >= TARGETS["rest_jobs_per_s"],
        "kserve_ratio": None if ratio is None else ratio >= TARGETS["kserve_ratio"],
        "mcp_p50_ms": None if p50 is None else p50 <= TARGETS["mcp_p50_ms"],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each part; medians")
    parser.add_argument(
        "--only",
        type=lambda text: [p for p in text.split(",") if p],
        default=list(PARTS),
        help="a comma-separated subset of rest_jobs,kserve,mcp",
    )
    parser.add_argument("--jobs", type=int, default=10000, help="REST jobs per run")
    parser.add_argument("--client-concurrency", type=int, default=64, help="REST job POSTers")
    parser.add_argument("--actor-concurrency", type=int, default=64, help="the noop actor's")
    parser.add_argument(
        "--execution",
        choices=("runtime", "inprocess"),
        default="runtime",
        help="how both actors run their handlers: a runtime process beside the sidecar, or"
        " inside the sidecar (the ModelServer's own way)",
    )
    parser.add_argument("--kserve-seconds", type=float, default=10.0)
    parser.add_argument("--kserve-concurrency", type=int, default=32)
    parser.add_argument(
        "--kserve-slices", type=int, default=5, help="turns per server (alternating)"
    )
    parser.add_argument("--kserve-python", default=None, help="a Python with kserve installed")
    parser.add_argument("--mcp-calls", type=int, default=500)
    args = parser.parse_args()
    unknown = set(args.only) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
    return args


async def main() -> None:
    args = parse_args()
    os.chdir(Path(__file__).resolve().parent.parent)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    report: dict[str, Any] = {
        "workload": {
            "parts": [part for part in PARTS if part in args.only],
            "repeat": args.repeat,
            "jobs": args.jobs,
            "client_concurrency": args.client_concurrency,
            "actor": {"name": NOOP, "handler": "examples.pipeline:noop", "replicas": 1},
            "actor_concurrency": args.actor_concurrency,
            "execution": args.execution,
            "kserve_seconds": args.kserve_seconds,
            "kserve_concurrency": args.kserve_concurrency,
            "kserve_slices": args.kserve_slices,
            "kserve_payload": orjson.loads(INFER_BODY),
            "mcp_calls": args.mcp_calls,
            "mcp_era": MCP_VERSION,
            "gateway_auth": "none",
            "rest_latency": "jobs.updated_at - jobs.created_at of succeeded jobs",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
    }
    await benchmark(args, report)
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["targets"] = TARGETS
    report["meets"] = verdicts(report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit(130)
