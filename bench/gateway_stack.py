"""The platform bench/gateway.py measures, as real processes: a manager, one agent (no GPUs)
running the crew, the no-op actor ``noop`` (``examples.pipeline:noop``, 1 replica, runtime +
sidecar) and the KServe echo actor (``examples/specs/kserve-echo.yaml``), and a gateway with
``auth.mode = none`` and one tool, ``noop``, on the route ``[noop]``.

Everything lives on a database (``bench_gateway_<random>``, made with ``mgr schema oneshot``)
and a Redis key prefix (``bench:<random>:``) of its own; both are removed at the end, with every
process (the replicas too, which outlive their agent by design). Logs under a temporary folder,
kept with ``BENCH_KEEP_LOGS=1``. Services log at WARNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
import yaml
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ai.backend.agent.clients.processes import is_same_process
from ai.backend.common.db.engine import drop_database
from ai.backend.testutils.control_plane import (
    AgentSetup,
    Keypair,
    SignedClient,
    create_keypair,
    start_agent,
    start_manager,
    wait_until,
)
from ai.backend.testutils.gateway import RunningGateway, start_gateway
from ai.backend.testutils.processes import Child, ProcessGroup
from ai.backend.testutils.services import free_port, postgres_url, redis_url
from ai.backend.testutils.spawn import child_environment

ROOT = Path(__file__).resolve().parent.parent
NOOP = "noop"
NOOP_HANDLER = "examples.pipeline:noop"
ECHO_SPEC = ROOT / "examples/specs/kserve-echo.yaml"
ECHO_MODEL = "echo"
CREW = ("happy-end", "error-end")
LOG_LEVEL = "WARNING"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Stack:
    def __init__(self, *, actor_concurrency: int, execution: str = "runtime") -> None:
        suffix = uuid.uuid4().hex[:12]
        self.database = f"bench_gateway_{suffix}"
        self.database_url = postgres_url(self.database)
        self.prefix = f"bench:{suffix}:"
        self.actor_concurrency = actor_concurrency
        self.execution = execution  # of both actors: "runtime" or "inprocess"
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
        self.state_dir = self.workdir / "agent-state"
        env = {"BACKEND_LOGGING__LEVEL": LOG_LEVEL}
        self.group = ProcessGroup(self.workdir, env=env)
        self.redis = Redis.from_url(redis_url())
        self.session = aiohttp.ClientSession()
        self.engine: AsyncEngine | None = None
        self.manager: Child | None = None
        self.agent: Child | None = None
        self.gateway: RunningGateway | None = None
        self.client: SignedClient | None = None
        self.gateway_keypair_role = ""
        self.database_created = False
        self.kserve_error: str | None = None  # why our KServe side cannot be measured

    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``./backend.ai …`` (the same interpreter and paths) against the bench database."""
        return subprocess.run(
            [sys.executable, "-m", "ai.backend.cli", *args],
            env=child_environment({"BACKEND_DB__URL": self.database_url}),
            capture_output=True,
            text=True,
            timeout=120,
        )

    async def _start(self) -> None:
        started = time.monotonic()
        self.database_created = True  # a name of its own: dropped (IF EXISTS) at the end
        done = self._cli("mgr", "schema", "oneshot")
        if done.returncode != 0:
            raise RuntimeError(f"mgr schema oneshot failed:\n{done.stdout}{done.stderr}")
        self.engine = create_async_engine(self.database_url, pool_size=2)
        admin = create_keypair(self.database_url, "--admin")
        agent_keys = create_keypair(self.database_url, "--role", "agent")
        try:
            gateway_keys = create_keypair(self.database_url, "--role", "gateway")
            self.gateway_keypair_role = "gateway"
        except AssertionError:  # an older manager without the role
            gateway_keys, self.gateway_keypair_role = admin, "admin"
        port = free_port()
        env = {"BACKEND_DB__URL": self.database_url, "BACKEND_REDIS__URL": redis_url()}
        env |= {"BACKEND_REDIS__PREFIX": self.prefix, "BACKEND_API__PORT": str(port)}
        self.manager = await start_manager(self.group, "manager", env)
        endpoint = f"http://127.0.0.1:{port}"
        self.client = SignedClient(self.session, endpoint, admin.access_key, admin.secret_key)
        self.state_dir.mkdir()
        setup = AgentSetup(
            agent_id="bench-gateway-agent",
            manager_endpoint=endpoint,
            access_key=agent_keys.access_key,
            secret_key=agent_keys.secret_key,
            redis_url=redis_url(),
            prefix=self.prefix,
            state_dir=str(self.state_dir),
            port=free_port(),
            heartbeat_interval="1s",
            claim_idle="30s",
        )
        self.agent = await start_agent(self.group, setup, str(self.workdir))
        await self._apply(NOOP, self._noop_spec())
        echo = self._echo_spec()
        await self._apply(echo.pop("name"), echo)
        for name in (*CREW, NOOP, "kserve-echo"):
            await self.wait_running(name)
        await self._start_gateway(endpoint, gateway_keys)
        log(f"stack up in {time.monotonic() - started:.1f} s (logs: {self.workdir})")

    def _noop_spec(self) -> dict[str, Any]:
        return {
            "handler": NOOP_HANDLER,
            "pythonpath": [str(ROOT)],
            "concurrency": self.actor_concurrency,
            "timeout": "30s",
            "scaling": {"min_replicas": 1, "max_replicas": 1},
            "execution": self.execution,
        }

    def _echo_spec(self) -> dict[str, Any]:
        """The example's spec as ``actor apply -f`` sends it (``pythonpath`` made absolute),
        in the bench's execution mode."""
        spec: dict[str, Any] = yaml.safe_load(ECHO_SPEC.read_text())
        spec["pythonpath"] = [str((ECHO_SPEC.parent / p).resolve()) for p in spec["pythonpath"]]
        spec["execution"] = self.execution
        return spec

    async def _start_gateway(self, manager: str, keys: Keypair) -> None:
        tools = self.workdir / "tools.yaml"
        tool = {
            "name": NOOP,
            "description": "Returns its arguments (the benchmark's no-op actor).",
            "parameters": {"value": {"type": "integer"}},
            "required": ["value"],
            "route": [NOOP],
            "timeout": "30s",
            "wait": "30s",
        }
        tools.write_text(yaml.safe_dump({"tools": [tool]}))
        env = {
            "BACKEND_DB__URL": self.database_url,
            "BACKEND_REDIS__URL": redis_url(),
            "BACKEND_REDIS__PREFIX": self.prefix,
            "BACKEND_API__PORT": str(free_port()),
            "BACKEND_AUTH__MODE": "none",
            "BACKEND_JOBS__GATEWAY_ID": "bench-gw",
            "BACKEND_TOOLS__PATH": str(tools),
            "BACKEND_MANAGER__API": manager,
            "BACKEND_MANAGER__ACCESS_KEY": keys.access_key,
            "BACKEND_MANAGER__SECRET_KEY": keys.secret_key,
        }
        self.gateway = await start_gateway(self.group, "gateway", env, self.session)
        # the echo model reaches the registry via the agent's heartbeat; the gateway reads it
        # from the manager (every few seconds and on a miss)
        ready = f"{self.gateway.url}/v2/models/{ECHO_MODEL}/ready"
        deadline = time.monotonic() + 60
        while True:
            async with self.session.get(ready) as response:
                status, text = response.status, await response.text()
            if status == 200:
                return
            if time.monotonic() > deadline or (status == 404 and "error" not in text):
                self.kserve_error = f"GET {ready}: {status} {text[:300]}"
                log(f"KServe endpoint not usable: {self.kserve_error}")
                return
            await asyncio.sleep(0.5)

    async def __aexit__(self, *exc: object) -> None:
        self.group.stop_all()
        self.stop_replicas()
        await self.session.close()
        with contextlib.suppress(Exception):
            keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}*", count=1000)]
            if keys:
                await self.redis.delete(*keys)
        await self.redis.aclose()
        if self.engine is not None:
            await self.engine.dispose()
        if self.database_created:
            with contextlib.suppress(Exception):
                await drop_database(self.database_url)
        if os.environ.get("BENCH_KEEP_LOGS"):
            log(f"logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- the manager's API and the agent's files ---------------------------------------------

    async def _apply(self, name: str, spec: dict[str, Any]) -> None:
        assert self.client is not None
        response = await self.client.put(f"/v1/actors/{name}", spec)
        assert response.status in (200, 201), response.body

    async def wait_running(self, name: str) -> None:
        assert self.client is not None
        client = self.client

        async def running() -> bool:
            response = await client.get(f"/v1/actors/{name}")
            return response.status == 200 and bool(response.body["running_replicas"])

        watch = tuple(c for c in (self.manager, self.agent) if c is not None)
        await wait_until(running, what=f"{name} running", timeout=90, watch=watch)

    def replica_processes(self) -> dict[str, dict[str, int]]:
        """Actor name → role (``runtime``, ``sidecar``) → pid, from the agent's state files."""
        found: dict[str, dict[str, int]] = {}
        for path in sorted(self.state_dir.glob("replicas/*/state.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                state = json.loads(path.read_text())
                for role, p in state["processes"].items():
                    if is_same_process(int(p["pid"]), int(p["start_time"])):
                        found.setdefault(state["desired"]["actor_name"], {})[role] = int(p["pid"])
        return found

    def stop_replicas(self) -> None:
        """SIGTERM what the state files still name, SIGKILL what is left after 10 s."""
        for signum, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
            pids = [pid for roles in self.replica_processes().values() for pid in roles.values()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
            deadline = time.monotonic() + wait
            while pids and self.replica_processes() and time.monotonic() < deadline:
                time.sleep(0.1)

    def pids(self, *actors: str) -> dict[str, list[int]]:
        """``gateway`` and ``<actor>:<role>`` → pids (for CPU accounting)."""
        assert self.gateway is not None
        groups = {"gateway": [self.gateway.child.pid]}
        replicas = self.replica_processes()
        for actor in actors:
            for role, pid in replicas.get(actor, {}).items():
                groups[f"{actor}:{role}"] = [pid]
        return groups

    # --- the database ------------------------------------------------------------------------

    async def postgres_backends(self) -> list[int]:
        """The server processes of the connections to the bench database (the gateway's)."""
        assert self.engine is not None
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": self.database},
            )
            return [int(row[0]) for row in rows]

    async def open_jobs(self) -> int:
        assert self.engine is not None
        async with self.engine.connect() as connection:
            count = await connection.scalar(
                sa.text("SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')")
            )
            return int(count or 0)

    async def job_rows(self, ids: list[str]) -> list[Any]:
        """(status, created_at, updated_at) of the jobs ``ids``."""
        assert self.engine is not None
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                sa.text(
                    "SELECT status::text, created_at, updated_at FROM jobs WHERE id = ANY(:ids)"
                ),
                {"ids": ids},
            )
            return list(rows)

    async def job_stages(self, tool: str, since: float) -> list[Any]:
        """Per job of ``tool`` created after ``since`` (epoch s): epoch seconds of its insert
        (``created_at``), its ``running`` and ``succeeded`` events (``at``: written by the
        sidecar and by ``happy-end``), of the ``succeeded`` event's arrival in the events stream
        (its entry id, Redis' clock) and of the update that stored the end (``updated_at``)."""
        assert self.engine is not None
        query = """
            SELECT extract(epoch FROM j.created_at) AS created,
                   extract(epoch FROM r.at) AS running,
                   extract(epoch FROM s.at) AS succeeded,
                   split_part(s.entry_id, '-', 1)::bigint / 1000.0 AS added,
                   extract(epoch FROM j.updated_at) AS stored
            FROM jobs AS j
            JOIN job_events AS r ON r.job_id = j.id AND r.kind = 'running'
            JOIN job_events AS s ON s.job_id = j.id AND s.kind = 'succeeded'
            WHERE j.tool = :tool AND j.created_at >= to_timestamp(:since)
        """
        async with self.engine.connect() as connection:
            return list(await connection.execute(sa.text(query), {"tool": tool, "since": since}))

    async def redis_cpu(self) -> float:
        info: Any = await self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
