"""Benchmark: the GPU-aware scheduler placing 1,000 replicas on 100 agents × 8 mock GPUs.

    ./py bench/scheduler.py [--repeat 3] [--agents 100] [--gpus 8] [--replicas 1000]

Creates a database of its own (``BENCH_POSTGRES``, default the local server; a unique name,
dropped at the end), migrates it, registers the agents (A100-80G and H100-80G, zones a/b) and
actors of mixed specs: CPU-only, 1 or 2 whole GPUs, 0.5 and 0.25 shares, an H100-only actor in
zone a, and one asking for a GPU model no agent has (its replicas stay pending). All replicas go
pending in one shuffled queue; then the real scheduler (``Scheduler.schedule_pending``: the
locked transaction, the placement, the writes) runs until a run places nothing more.

Reports the wall time of the scheduling runs (database included), placements/s, how much of
it the pure placement took (``plan_s``), and ``over_allocated``: devices held beyond capacity
(whole twice, whole and shared, or shares above 1.0) plus agents whose CPU or memory is
over-committed, counted by SQL from the replica rows alone (must be 0). ``--repeat N`` resets
the replicas to pending and runs again; figures are medians (the runs under ``runs``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from ai.backend.common.db.engine import drop_database
from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.manager.config import SchedulerConfig
from ai.backend.manager.models import ActorRow, AgentRow, ReplicaRow
from ai.backend.manager.models.schema import oneshot
from ai.backend.manager.repositories.scheduling import SchedulingDecision, SchedulingSnapshot
from ai.backend.manager.services.scheduling.scheduler import Scheduler

POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432")
GiB = 1 << 30

# name → (share of the replicas, spec fields beyond name and handler)
ACTORS: dict[str, tuple[float, dict[str, Any]]] = {
    "cpu-only": (0.20, {"resources": {"cpu": 1, "mem": "2g"}}),
    "whole-1": (0.20, {"resources": {"cpu": 4, "mem": "16g", "cuda.device": 1}}),
    "whole-2": (
        0.10,
        {"resources": {"cpu": 8, "cuda.device": 2}, "placement": {"selector": "dispersed"}},
    ),
    "half": (0.20, {"resources": {"cpu": 1, "cuda.shares": 0.5}}),
    "quarter": (
        0.20,
        {"resources": {"cuda.shares": 0.25}, "placement": {"selector": "round-robin"}},
    ),
    "h100-zone-a": (
        0.08,
        {
            "resources": {"cpu": 2, "cuda.device": 1},
            "gpu": {"model": "H100*", "min_memory": "80g"},
            "placement": {"labels": {"zone": "a"}},
        },
    ),
    "b200": (0.02, {"resources": {"cuda.device": 1}, "gpu": {"model": "B200*"}}),
}

OVER_ALLOCATED = sa.text(
    """
    WITH held AS (
        SELECT r.agent_id, d.device_id,
               count(*) FILTER (WHERE r.slots ? 'cuda.device') AS whole,
               coalesce(sum((r.slots->>'cuda.shares')::numeric), 0) AS shares
        FROM replicas AS r, jsonb_array_elements_text(r.device_ids) AS d(device_id)
        WHERE r.status IN ('scheduled', 'starting', 'running', 'terminating')
        GROUP BY r.agent_id, d.device_id
    ), used AS (
        SELECT r.agent_id,
               sum(coalesce((r.slots->>'cpu')::numeric, 0)) AS cpu,
               sum(coalesce((r.slots->>'mem')::numeric, 0)) AS mem
        FROM replicas AS r
        WHERE r.status IN ('scheduled', 'starting', 'running', 'terminating')
        GROUP BY r.agent_id
    )
    SELECT
        (SELECT count(*) FROM held
         WHERE whole > 1 OR shares > 1 OR (whole > 0 AND shares > 0))
      + (SELECT count(*) FROM used JOIN agents AS a ON a.id = used.agent_id
         WHERE used.cpu > (a.slots_total->>'cpu')::numeric
            OR used.mem > (a.slots_total->>'mem')::numeric)
    """
)


class TimedScheduler(Scheduler):
    """The real scheduler, also timing its pure placement step."""

    plan_seconds = 0.0

    def _decide(self, snapshot: SchedulingSnapshot) -> SchedulingDecision:
        started = time.perf_counter()
        try:
            return super()._decide(snapshot)
        finally:
            self.plan_seconds += time.perf_counter() - started


async def populate(engine: AsyncEngine, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    agents = []
    for i in range(args.agents):
        model = "H100-80G" if i % 4 == 0 else "A100-80G"
        agents.append(
            {
                "id": f"agent-{i:03d}",
                "addr": f"http://10.0.{i // 250}.{i % 250}:6001",
                "status": "alive",
                "slots_total": {
                    "cpu": "64",
                    "mem": str(512 * GiB),
                    "cuda.device": str(args.gpus),
                    "cuda.shares": str(args.gpus),
                },
                "slots_used": {},
                "devices": [
                    {
                        "id": str(g),
                        "kind": "cuda",
                        "model": model,
                        "memory": 80 * GiB,
                        "uuid": f"GPU-{uuid.uuid4()}",
                    }
                    for g in range(args.gpus)
                ],
                "labels": {"zone": "a" if i % 2 == 0 else "b"},
                "version": "bench",
            }
        )
    names = list(ACTORS)
    counts = [round(args.replicas * ACTORS[name][0]) for name in names]
    counts[0] += args.replicas - sum(counts)
    queue = [name for name, count in zip(names, counts, strict=True) for _ in range(count)]
    rng.shuffle(queue)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    replicas = [
        {
            "id": f"{name}-{i:05d}",
            "actor_name": name,
            "status": "pending",
            "generation": 1,
            "created_at": start + timedelta(milliseconds=i),
        }
        for i, name in enumerate(queue)
    ]
    actors = [
        {
            "name": name,
            "spec": ActorSpec.model_validate(
                {"name": name, "handler": "examples.pipeline:noop", **fields}
            ).model_dump(mode="json"),
            "status": "active",
            "generation": 1,
        }
        for name, (_, fields) in ACTORS.items()
    ]
    async with engine.begin() as connection:
        await connection.execute(sa.insert(AgentRow), agents)
        await connection.execute(sa.insert(ActorRow), actors)
        await connection.execute(sa.insert(ReplicaRow), replicas)


async def reset(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "UPDATE replicas SET status = 'pending', agent_id = NULL, slots = '{}',"
                " device_ids = '[]', status_info = NULL"
            )
        )
        await connection.execute(sa.text("UPDATE agents SET slots_used = '{}'"))
        await connection.execute(sa.text("DELETE FROM scheduler_events"))


async def run_once(engine: AsyncEngine) -> dict[str, Any]:
    scheduler = TimedScheduler(
        async_sessionmaker(engine, expire_on_commit=False), SchedulerConfig()
    )
    placed = scheduler_runs = passes = 0
    unplaceable: list[Any] = []
    started = time.perf_counter()
    while True:
        report = await scheduler.schedule_pending()
        scheduler_runs += 1
        passes += report.passes
        placed += len(report.placed)
        unplaceable = report.unplaceable
        if not report.placed:
            break
    wall = time.perf_counter() - started
    async with engine.connect() as connection:
        over_allocated = int(await connection.scalar(OVER_ALLOCATED) or 0)
        scheduled = int(
            await connection.scalar(
                sa.text("SELECT count(*) FROM replicas WHERE status = 'scheduled'")
            )
            or 0
        )
    return {
        "placed": placed,
        "scheduled_rows": scheduled,
        "unplaceable": len(unplaceable),
        "wall_s": round(wall, 4),
        "plan_s": round(scheduler.plan_seconds, 4),
        "placements_per_s": round(placed / wall, 1),
        "over_allocated": over_allocated,
        "passes": passes,
        "scheduler_runs": scheduler_runs,
        "reasons": sorted({item.message for item in unplaceable}),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1, help="runs; figures are medians")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=8, help="mock GPUs per agent")
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    url = f"{POSTGRES}/bench_scheduler_{uuid.uuid4().hex[:12]}"
    await oneshot(url)
    engine = create_async_engine(url, pool_size=2, max_overflow=2)
    results: list[dict[str, Any]] = []
    try:
        await populate(engine, args)
        for _ in range(args.repeat):
            await reset(engine)
            results.append(await run_once(engine))
    finally:
        await engine.dispose()
        await drop_database(url)
    numeric = [key for key, value in results[0].items() if isinstance(value, int | float)]
    summary: dict[str, Any] = {key: statistics.median(r[key] for r in results) for key in numeric}
    summary["over_allocated"] = max(r["over_allocated"] for r in results)
    summary["reasons"] = results[-1]["reasons"]
    workload = {
        "agents": args.agents,
        "gpus_per_agent": args.gpus,
        "replicas": args.replicas,
        "actors": {name: share for name, (share, _) in ACTORS.items()},
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
    }
    runs = [{"wall_s": r["wall_s"], "placed": r["placed"]} for r in results]
    print(json.dumps({"workload": workload, **summary, "runs": runs}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
