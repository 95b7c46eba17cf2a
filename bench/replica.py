"""Benchmark: cold start of a replica, and the idle memory of the control plane and a replica.

    ./py bench/replica.py [--repeat 3]

Real processes, as a user runs them: a manager (scheduler interval 0.2 s) on a database and Redis
key prefix of its own (``POSTGRES_HOST`` …, ``REDIS_HOST`` …; both removed at the end; logs kept
with ``BENCH_KEEP_LOGS=1``) and one agent without GPUs at the default ``heartbeat_interval``
(3 s), running the crew (``happy-end``, ``error-end``).

Cold start, per execution mode (``runtime``, ``inprocess``) and trigger: ``apply`` (``PUT
/v1/actors/{name}`` of a new actor running ``examples.pipeline:double`` returns) or ``scale``
(the actor pinned to 0 and drained, then ``scale {"replicas": 1}`` returns). One envelope is
published at once (it waits in the stream); ``done`` is when the client reads its ``succeeded``
event. The steps, in ms from that moment: ``created`` (the replica row) → ``scheduled`` →
``spawned`` (its first process, from ``state.json``) → ``ready`` (the sidecar consumes and the
runtime said hello: ``status.json``) → ``picked_up`` (the envelope's ``running`` event) →
``done``; ``manager_starting`` / ``manager_running``: when ``GET /v1/actors/{name}`` shows the
replica so (the agent's heartbeats report it). Each run has a new actor, deleted afterwards.

Idle memory: an actor of each mode with one envelope done, then ``IDLE_SECONDS`` idle; VmRSS of
every process; ``total_mb`` per mode = manager + agent + crew + one replica of that mode.
``--repeat N``: medians of N runs (``done`` of each under ``runs``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from ai.backend.agent.clients.processes import is_same_process
from ai.backend.common.db.engine import drop_database
from ai.backend.common.dto.envelope import Envelope, Route
from ai.backend.manager.models.schema import oneshot
from ai.backend.testutils.control_plane import (
    AgentSetup,
    SignedClient,
    create_keypair,
    start_agent,
    start_manager,
    wait_until,
)
from ai.backend.testutils.processes import Child, ProcessGroup
from ai.backend.testutils.services import free_port, postgres_url, redis_url

ROOT = Path(__file__).resolve().parent.parent
MODES = ("runtime", "inprocess")
TRIGGERS = ("apply", "scale")
HANDLER = "examples.pipeline:double"
CREW = ("happy-end", "error-end")
HEARTBEAT_INTERVAL = "3s"
POLL_INTERVAL = 0.1  # GET /v1/actors/{name} while a replica starts
IDLE_SECONDS = 5.0
TARGET_COLD_START_MS = 2000
TARGET_MANAGER_AGENT_MB = 250
STEPS = ("created", "scheduled", "spawned", "ready", "picked_up", "done")
MANAGER_STEPS = {"starting": "manager_starting", "running": "manager_running"}
BOOT_WALL_TIME = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
    return round(kib / 1024, 1)


def wall_time(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class Bench:
    """The manager, an agent and the crew on a database and key prefix of their own."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:12]
        self.database_url = postgres_url(f"bench_replica_{suffix}")
        self.prefix = f"bench:{suffix}:"
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-replica-"))
        self.state_dir = self.workdir / "agent-state"
        self.group = ProcessGroup(self.workdir, env={"PYTHONPATH": str(ROOT / "src")})
        self.redis = Redis.from_url(redis_url())
        self.session = aiohttp.ClientSession()
        self.manager: Child | None = None
        self.agent: Child | None = None
        self.client: SignedClient | None = None
        self.database_created = False  # only what this bench created is dropped

    async def __aenter__(self) -> Bench:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _start(self) -> None:
        await oneshot(self.database_url)
        self.database_created = True
        admin = create_keypair(self.database_url, "--admin")
        agent_keys = create_keypair(self.database_url, "--role", "agent")
        port = free_port()
        env = {"BACKEND_DB__URL": self.database_url, "BACKEND_REDIS__URL": redis_url()}
        env |= {"BACKEND_REDIS__PREFIX": self.prefix, "BACKEND_API__PORT": str(port)}
        env |= {"BACKEND_SCHEDULER__INTERVAL": "0.2s"}  # the rest as users get it
        self.manager = await start_manager(self.group, "manager", env)
        endpoint = f"http://127.0.0.1:{port}"
        self.client = SignedClient(self.session, endpoint, admin.access_key, admin.secret_key)
        self.state_dir.mkdir()
        setup = AgentSetup(
            agent_id="bench-agent",
            manager_endpoint=endpoint,
            access_key=agent_keys.access_key,
            secret_key=agent_keys.secret_key,
            redis_url=redis_url(),
            prefix=self.prefix,
            state_dir=str(self.state_dir),
            port=free_port(),
            heartbeat_interval=HEARTBEAT_INTERVAL,
            claim_idle="30s",
        )
        self.agent = await start_agent(self.group, setup, str(self.workdir))
        for name in CREW:
            await self.wait_running(name)

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):  # drain what is left (the crew stays)
            _, listing = await self.call("GET", "/v1/actors")
            for actor in listing["items"]:
                if not actor["is_system"]:
                    await self.delete(actor["name"])
        self.group.stop_all()  # the replicas outlive their agent by design: stop them too
        self.stop_replicas()
        await self.session.close()
        keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}*", count=1000)]
        if keys:
            await self.redis.delete(*keys)
        await self.redis.aclose()
        if self.database_created:
            await drop_database(self.database_url)
        if not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- the REST API ----------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.client is not None
        response = await self.client.request(method, path, body)
        return response.status, response.body

    async def actor(self, name: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/actors/{name}")
        assert status == 200, body
        return dict(body)

    async def wait_running(self, name: str) -> None:
        async def running() -> bool:
            return bool((await self.actor(name))["running_replicas"])

        watch = tuple(c for c in (self.manager, self.agent) if c is not None)
        await wait_until(running, what=f"{name} running", timeout=60, watch=watch)

    async def wait_drained(self, name: str) -> None:
        async def drained() -> bool:
            replicas = (await self.actor(name))["replicas"]
            return all(r["status"] in ("terminated", "failed", "lost") for r in replicas)

        await wait_until(drained, what=f"{name} drained", timeout=60, interval=0.2)

    async def delete(self, name: str) -> None:
        status, body = await self.call("DELETE", f"/v1/actors/{name}")
        assert status in (202, 404), body

        async def gone() -> bool:
            return (await self.call("GET", f"/v1/actors/{name}"))[0] == 404

        await wait_until(gone, what=f"{name} deleted", timeout=60, interval=0.2)

    # --- one cold start --------------------------------------------------------------------

    async def publish(self, name: str) -> str:
        job_id = uuid.uuid4().hex
        envelope = Envelope(job_id=job_id, route=Route(actors=[name]), payload={"value": 21})
        await self.redis.xadd(f"{self.prefix}actor:{name}", {b"e": envelope.model_dump_json()})
        return job_id

    async def events_tail(self) -> Any:
        """Where the events written from now on start ("$" would miss the first ones)."""
        stream = f"{self.prefix}events"
        if await self.redis.exists(stream):
            info: Any = await self.redis.xinfo_stream(stream)
            return info["last-generated-id"]
        return b"0-0"

    async def job_events(self, job_id: str, last_id: Any, timeout: float) -> dict[str, float]:
        """Until the job's ``succeeded`` event: wall time of its ``running`` event (its ``at``)
        and of reading ``succeeded``."""
        found: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while "done" not in found:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not done after {timeout} s: {found}")
            response: Any = await self.redis.xread(
                {f"{self.prefix}events": last_id}, count=100, block=1000
            )
            now = time.time()
            for _stream, entries in response or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    event = orjson.loads(fields[b"ev"])
                    if event.get("job_id") != job_id:
                        continue
                    if event["kind"] == "running":
                        found.setdefault("picked_up", wall_time(event["at"]))
                    elif event["kind"] == "succeeded":
                        found["done"] = now
                    elif event["kind"] in ("failed", "cancelled"):
                        raise RuntimeError(f"job {job_id} {event['kind']}: {event}")
        return found

    async def replica_statuses(self, name: str, done: asyncio.Event) -> dict[str, Any]:
        """The newest replica's times (``created_at``, and ``updated_at`` as each status is
        first seen) until it is ``running`` in the manager, or 2 heartbeats after ``done``."""
        seen: dict[str, Any] = {}
        give_up: float | None = None
        while "manager_running" not in seen:
            replicas = (await self.actor(name))["replicas"]
            live = [r for r in replicas if r["status"] not in ("terminated", "terminating")]
            if live:
                newest = max(live, key=lambda r: r["created_at"])
                seen.setdefault("id", newest["id"])
                seen.setdefault("created", wall_time(newest["created_at"]))
                key = MANAGER_STEPS.get(newest["status"], newest["status"])
                seen.setdefault(key, wall_time(newest["updated_at"]))
            if done.is_set():
                give_up = give_up or time.monotonic() + 7
                if time.monotonic() > give_up:
                    break
            await asyncio.sleep(POLL_INTERVAL)
        return seen

    def replica_files(self, replica_id: str) -> dict[str, float]:
        """Wall times from the agent's files: first process started, sidecar ready."""
        folder = self.state_dir / "replicas" / replica_id
        state = json.loads((folder / "state.json").read_text())
        ticks = min(p["start_time"] for p in state["processes"].values())
        return {
            "spawned": BOOT_WALL_TIME + ticks / CLOCK_TICKS,
            "ready": (folder / "status.json").stat().st_mtime,
        }

    async def cold_start(self, name: str, mode: str, trigger: str) -> dict[str, float | None]:
        """Apply a new actor (or pin it to 0, drain, and scale it to 1); ms from the moment
        the request returns to each step of the replica and its first envelope."""
        spec = {"handler": HANDLER, "pythonpath": [str(ROOT)], "execution": mode}
        if trigger == "scale":
            assert (await self.call("POST", f"/v1/actors/{name}/scale", {"replicas": 0}))[0] == 200
            await self.wait_drained(name)
        last_id = await self.events_tail()
        if trigger == "apply":
            status, body = await self.call("PUT", f"/v1/actors/{name}", spec)
            assert status == 201, body
        else:
            status, body = await self.call("POST", f"/v1/actors/{name}/scale", {"replicas": 1})
            assert status == 200, body
        started = time.time()
        job_id = await self.publish(name)
        done = asyncio.Event()
        statuses = asyncio.create_task(self.replica_statuses(name, done))
        try:
            events = await self.job_events(job_id, last_id, timeout=60)
        finally:
            done.set()
        seen = await statuses
        times = {**seen, **self.replica_files(seen["id"]), **events}
        keys = [*STEPS, *MANAGER_STEPS.values()]
        return {k: round((times[k] - started) * 1000, 1) if k in times else None for k in keys}

    # --- memory ----------------------------------------------------------------------------

    def replica_processes(self) -> dict[str, tuple[str, dict[str, int]]]:
        """Replica id → (actor, role → pid) from the agent's ``state.json`` files."""
        found = {}
        for path in sorted(self.state_dir.glob("replicas/*/state.json")):
            state = json.loads(path.read_text())
            pids = {
                role: int(p["pid"])
                for role, p in state["processes"].items()
                if is_same_process(int(p["pid"]), int(p["start_time"]))
            }
            if pids:
                found[path.parent.name] = (state["desired"]["actor_name"], pids)
        return found

    def stop_replicas(self) -> None:
        """SIGTERM what the state files still name, SIGKILL what is left after 10 s."""
        for signum, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
            pids = [pid for _, roles in self.replica_processes().values() for pid in roles.values()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
            deadline = time.monotonic() + wait
            while pids and self.replica_processes() and time.monotonic() < deadline:
                time.sleep(0.1)

    async def idle_rss(self) -> dict[str, Any]:
        names = {mode: f"rss-{mode}-{uuid.uuid4().hex[:6]}" for mode in MODES}
        for mode, name in names.items():
            await self.cold_start(name, mode, "apply")
        await asyncio.sleep(IDLE_SECONDS)
        assert self.manager is not None and self.agent is not None
        control = {"manager": rss_mb(self.manager.pid), "agent": rss_mb(self.agent.pid)}
        replicas = {
            actor: {role: rss_mb(pid) for role, pid in roles.items()}
            for actor, roles in self.replica_processes().values()
        }
        crew = {name: replicas[name]["sidecar"] for name in CREW}
        manager_agent = sum(control.values())
        per_mode = {mode: replicas[name] for mode, name in names.items()}
        replica_mb = {mode: round(sum(p.values()), 1) for mode, p in per_mode.items()}
        return {
            **control,
            "manager_agent_mb": round(manager_agent, 1),
            "target_manager_agent_mb": TARGET_MANAGER_AGENT_MB,
            "replica_processes_mb": per_mode,
            "replica_mb": replica_mb,
            "crew_mb": crew,
            "total_mb": {
                mode: round(manager_agent + sum(crew.values()) + replica_mb[mode], 1)
                for mode in MODES
            },
        }


def medians(runs: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Each step's median over the runs that saw it (``None`` when none did)."""
    merged: dict[str, float | None] = {}
    for key in runs[0]:
        values = [v for run in runs if (v := run[key]) is not None]
        merged[key] = round(statistics.median(values), 1) if values else None
    return merged


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, float | None]]]] = {
        mode: {trigger: [] for trigger in TRIGGERS} for mode in MODES
    }
    async with Bench() as bench:
        for _ in range(args.repeat):
            for mode in MODES:
                name = f"cold-{mode}-{uuid.uuid4().hex[:6]}"
                for trigger in TRIGGERS:
                    runs[mode][trigger].append(await bench.cold_start(name, mode, trigger))
                await bench.delete(name)
        memory = await bench.idle_rss()
    return {
        "cold_start_ms": {
            mode: {trigger: medians(runs[mode][trigger]) for trigger in TRIGGERS} for mode in MODES
        },
        "target_cold_start_ms": TARGET_COLD_START_MS,
        "idle_rss_mb": memory,
        "runs": {
            mode: {trigger: [run["done"] for run in runs[mode][trigger]] for trigger in TRIGGERS}
            for mode in MODES
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1, help="runs of each mode; medians")
    args = parser.parse_args()
    workload: dict[str, Any] = {"handler": HANDLER, "heartbeat_interval": HEARTBEAT_INTERVAL}
    workload |= {"scheduler_interval": "0.2s", "idle_seconds": IDLE_SECONDS}
    workload |= {"repeat": args.repeat, "cpus": os.cpu_count()}
    print(json.dumps({"workload": workload, **await benchmark(args)}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
