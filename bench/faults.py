"""The fault suite, long: each fault in turn under a steady load of fan-out jobs, on a Redis of
its own (append-only file on), with every process of the data plane real.

    ./py bench/faults.py [--rate 20] [--before 5] [--after 15] [--repeat 1] [--only FAULT]

For each fault: jobs submitted, succeeded, failed, lost (no terminal event), double-terminal
(more than one), wrong results, new dead letters, and recovery seconds (from the fault until
every job submitted before it has ended). Prints a table per run on stderr and one JSON object
on stdout: {"settings": …, "runs": [[report, …], …]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from ai.backend.common.transport.redis_keys import RedisKeys
from ai.backend.testutils.dataplane import DataPlane
from ai.backend.testutils.fault_suite import FAULTS, FaultReport, FaultSuite, LoadSettings
from ai.backend.testutils.processes import ProcessGroup
from ai.backend.testutils.redis_server import PrivateRedis

COLUMNS = [
    "submitted",
    "succeeded",
    "failed",
    "lost",
    "double_terminal",
    "wrong_result",
    "dead_lettered",
    "in_flight_at_fault",
    "recovery_s",
]


async def run_suite(settings: LoadSettings, faults: list[str], workdir: Path) -> list[FaultReport]:
    server = PrivateRedis(workdir / "redis")
    server.start()
    prefix = f"faults-{uuid.uuid4().hex[:8]}:"
    processes = ProcessGroup(
        workdir,
        env={
            "BACKEND_REDIS__URL": server.url,
            "BACKEND_REDIS__PREFIX": prefix,
            "BACKEND_LOGGING__LEVEL": "INFO",
        },
    )
    redis = Redis.from_url(server.url, decode_responses=False)
    suite = FaultSuite(DataPlane(processes, redis, RedisKeys(prefix), workdir), server, settings)
    reports = []
    try:
        await suite.start()
        for fault in faults:
            report = await suite.run(fault, FAULTS[fault])
            print(f"{fault}: {report.as_dict()}", file=sys.stderr)
            reports.append(report)
    finally:
        processes.stop_all()
        await redis.aclose()
        server.stop()
    return reports


def table(reports: list[FaultReport], title: str) -> Table:
    view = Table(title=title)
    view.add_column("fault")
    for column in COLUMNS:
        view.add_column(column.replace("_", " "), justify="right")
    for report in reports:
        values = report.as_dict()
        view.add_row(report.fault, *("-" if values[c] is None else str(values[c]) for c in COLUMNS))
    return view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="jobs per second")
    parser.add_argument("--before", type=float, default=5.0, help="seconds of load before")
    parser.add_argument("--after", type=float, default=15.0, help="seconds of load after")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds jobs may take after")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the whole suite")
    parser.add_argument("--only", action="append", choices=list(FAULTS), help="these faults")
    args = parser.parse_args()
    settings = LoadSettings(args.rate, args.before, args.after, args.settle)
    faults = args.only or list(FAULTS)
    runs: list[list[dict[str, Any]]] = []
    console = Console(stderr=True, width=150)
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bai-faults-") as workdir:
            reports = asyncio.run(run_suite(settings, faults, Path(workdir)))
        console.print(table(reports, f"run {run + 1} of {args.repeat}"))
        runs.append([r.as_dict() for r in reports])
    print(json.dumps({"settings": vars(args), "runs": runs}, indent=1))
    clean = all(r["lost"] == 0 and r["double_terminal"] == 0 for run in runs for r in run)
    sys.exit(0 if clean else 1)


if __name__ == "__main__":
    main()
