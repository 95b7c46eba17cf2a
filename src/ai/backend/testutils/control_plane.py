"""A control plane of real processes for tests: a manager (and agents) on free ports against a
database and Redis key prefix of the test alone, and a client that signs like the SDK will."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

# what the children run (Pants packs what this module imports): the manager, the agent, and
# the sidecars and runtimes the agent starts
import ai.backend.agent.cli  # noqa: F401
import ai.backend.manager.cli  # noqa: F401
import ai.backend.runtime.__main__  # noqa: F401
import ai.backend.sidecar.cli  # noqa: F401
from ai.backend.agent.clients.processes import process_start_time
from ai.backend.common.auth.hmac_signing import sign_request
from ai.backend.common.dto.manager_api import KeypairRoleName
from ai.backend.common.json import dumps
from ai.backend.manager.repositories.keypairs import KeypairRepository

from .dataplane import TERMINAL_KINDS, DataPlane
from .processes import Child, ProcessGroup
from .services import free_port, redis_url
from .spawn import child_environment
from .waiting import wait_until

__all__ = ["wait_until"]  # re-exported: control-plane tests wait on the cluster with it


@dataclass
class ApiResponse:
    status: int
    body: Any


class SignedClient:
    """Signs each request with a keypair (DESIGN.md §6) and returns status + parsed JSON."""

    def __init__(
        self, session: aiohttp.ClientSession, endpoint: str, access_key: str, secret_key: str
    ) -> None:
        self.session = session
        self.endpoint = endpoint.rstrip("/")
        self.access_key = access_key
        self.secret_key = secret_key

    def headers(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        **overrides: str,
    ) -> dict[str, str]:
        return {
            **sign_request(
                access_key=self.access_key,
                secret_key=self.secret_key,
                method=method,
                path_with_query=path,
                host=urlsplit(self.endpoint).netloc,
                content_type=content_type,
                body=body,
            ),
            **overrides,
        }

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ApiResponse:
        data = raw if raw is not None else (b"" if body is None else dumps(body))
        signed = headers if headers is not None else self.headers(method, path, data)
        async with self.session.request(
            method, self.endpoint + path, data=data, headers=signed
        ) as response:
            text = await response.read()
            parsed = None
            if text:
                parsed = (
                    await response.json(content_type=None)
                    if response.content_type == "application/json"
                    else text.decode()
                )
            return ApiResponse(response.status, parsed)

    async def get(self, path: str) -> ApiResponse:
        return await self.request("GET", path)

    async def put(self, path: str, body: Any) -> ApiResponse:
        return await self.request("PUT", path, body)

    async def post(self, path: str, body: Any) -> ApiResponse:
        return await self.request("POST", path, body)

    async def delete(self, path: str) -> ApiResponse:
        return await self.request("DELETE", path)


def manager_env(
    *, db_url: str, redis_url: str, prefix: str, port: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    return {
        "BACKEND_DB__URL": db_url,
        "BACKEND_REDIS__URL": redis_url,
        "BACKEND_REDIS__PREFIX": prefix,
        "BACKEND_API__PORT": str(port),
        "BACKEND_SCHEDULER__INTERVAL": "0.2s",
        "BACKEND_SCHEDULER__AGENT_TIMEOUT": "3s",
        **(extra or {}),
    }


async def start_manager(group: ProcessGroup, name: str, env: Mapping[str, str]) -> Child:
    """Start ``mgr start-server`` and wait for its ``/health``."""
    child = group.start(name, ["mgr", "start-server"], env=env)
    await wait_healthy(f"http://127.0.0.1:{env['BACKEND_API__PORT']}/health", child)
    return child


async def wait_healthy(url: str, child: Child) -> None:
    """Wait until ``url`` answers 200 (the service is up), failing if ``child`` exits."""

    async def healthy() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await wait_until(healthy, what=f"{child.name}: {url}", watch=(child,), timeout=30)


@dataclass(frozen=True)
class AgentSetup:
    """What an agent process of a test needs in its TOML config."""

    agent_id: str
    manager_endpoint: str
    access_key: str
    secret_key: str
    redis_url: str
    prefix: str
    state_dir: str
    port: int
    mock_gpus: tuple[tuple[str, str], ...] = ()  # (model, memory)
    labels: tuple[tuple[str, str], ...] = ()
    heartbeat_interval: str = "0.3s"
    claim_idle: str = "2s"
    cpu: int = 8
    mem: str = "16g"

    def toml(self) -> str:
        lines = [
            "[agent]",
            f'id = "{self.agent_id}"',
            f'state_dir = "{self.state_dir}"',
            f'heartbeat_interval = "{self.heartbeat_interval}"',
            f'claim_idle = "{self.claim_idle}"',
            'restart_backoff = "0.2s"',
            'restart_backoff_max = "1s"',
            'kill_grace = "2s"',
            "[agent.labels]",
            *(f'{key} = "{value}"' for key, value in self.labels),
            "[api]",
            f"port = {self.port}",
            "[manager]",
            f'api = "{self.manager_endpoint}"',
            f'access_key = "{self.access_key}"',
            f'secret_key = "{self.secret_key}"',
            "[redis]",
            f'url = "{self.redis_url}"',
            f'prefix = "{self.prefix}"',
            "[resources]",
            f"cpu = {self.cpu}",
            f'mem = "{self.mem}"',
            f'gpu_backend = "{"mock" if self.mock_gpus else "none"}"',
        ]
        for model, memory in self.mock_gpus:
            lines += ["[[resources.mock_gpus]]", f'model = "{model}"', f'memory = "{memory}"']
        return "\n".join(lines) + "\n"


async def start_agent(group: ProcessGroup, setup: AgentSetup, config_dir: str) -> Child:
    """Write the agent's config and start ``ag start-server``; wait for its ``/health``."""
    path = f"{config_dir}/{setup.agent_id}.toml"
    with open(path, "w") as file:
        file.write(setup.toml())
    child = group.start(setup.agent_id, ["ag", "start-server", "--config", path])
    await wait_healthy(f"http://127.0.0.1:{setup.port}/health", child)
    return child


@dataclass
class Keypair:
    access_key: str
    secret_key: str


def create_keypair(database_url: str, *options: str) -> Keypair:
    """``mgr keypair create … --json`` as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "ai.backend.cli", "mgr", "keypair", "create", *options, "--json"],
        env=child_environment({"BACKEND_DB__URL": database_url}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    return Keypair(created["access_key"], created["secret_key"])


async def insert_keypair(database_url: str, role: KeypairRoleName) -> Keypair:
    """A keypair written straight through the manager's repository: what ``create_keypair``
    does without starting a CLI process (fixtures make one per test)."""
    engine = create_async_engine(database_url, pool_size=1)
    try:
        repository = KeypairRepository(async_sessionmaker(engine, expire_on_commit=False))
        created = await repository.create(user_name=role, role=role)
    finally:
        await engine.dispose()
    return Keypair(created.access_key, created.secret_key)


@dataclass
class RunningManager:
    child: Child
    endpoint: str
    database_url: str
    prefix: str
    admin: Keypair
    session: aiohttp.ClientSession

    def client(self, keypair: Keypair | None = None) -> SignedClient:
        keys = keypair or self.admin
        return SignedClient(self.session, self.endpoint, keys.access_key, keys.secret_key)


@dataclass
class Cluster:
    """A manager, agents added on demand, and the data plane's Redis prefix to publish on."""

    manager: RunningManager
    plane: DataPlane
    processes: ProcessGroup
    workdir: Path
    agent_keys: Keypair
    agents: dict[str, Child]

    async def add_agent(
        self,
        agent_id: str,
        *,
        mock_gpus: tuple[tuple[str, str], ...] = (),
        labels: tuple[tuple[str, str], ...] = (),
        claim_idle: str = "2s",
    ) -> Child:
        state_dir = self.workdir / f"state-{agent_id}"
        state_dir.mkdir(exist_ok=True)
        setup = AgentSetup(
            agent_id=agent_id,
            manager_endpoint=self.manager.endpoint,
            access_key=self.agent_keys.access_key,
            secret_key=self.agent_keys.secret_key,
            redis_url=redis_url(),
            prefix=self.manager.prefix,
            state_dir=str(state_dir),
            port=free_port(),
            mock_gpus=mock_gpus,
            labels=labels,
            claim_idle=claim_idle,
        )
        child = await start_agent(self.processes, setup, str(self.workdir))
        self.agents[agent_id] = child
        return child

    async def actor(self, name: str) -> dict[str, Any]:
        response = await self.manager.client().get(f"/v1/actors/{name}")
        assert response.status == 200, response.body
        body: dict[str, Any] = response.body
        return body

    async def running_replicas(
        self, name: str, count: int, *, generation: int | None = None, timeout: float = 40
    ) -> list[dict[str, Any]]:
        """Wait until exactly ``count`` replicas (of ``generation``) run; return them."""

        async def running() -> list[dict[str, Any]] | None:
            replicas = [
                r
                for r in (await self.actor(name))["replicas"]
                if r["status"] == "running" and generation in (None, r["generation"])
            ]
            return replicas if len(replicas) == count else None

        try:
            found: list[dict[str, Any]] = await wait_until(
                running,
                what=f"{count} running replica(s) of {name}",
                timeout=timeout,
                watch=(self.manager.child,),
            )
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{await self.diagnosis(name)}") from None
        return found

    async def publish_jobs(self, actor: str, payloads: list[dict[str, Any]]) -> list[str]:
        """One job per payload, straight onto ``actor``'s stream; their ids."""
        job_ids = []
        for payload in payloads:
            job_id = uuid.uuid4().hex
            await self.plane.publish([actor], payload, job_id=job_id)
            job_ids.append(job_id)
        return job_ids

    async def ends_once(self, job_ids: list[str], timeout: float = 60) -> dict[str, Any]:
        """Wait until every job ended and the streams are quiet (nothing pending, nothing
        undelivered, no retry waiting); assert each ended exactly once; their terminal events."""
        wanted = set(job_ids)

        async def all_ended() -> bool:
            ended = {e["job_id"] for e in await self.plane.events() if e["kind"] in TERMINAL_KINDS}
            return wanted <= ended

        await wait_until(all_ended, what=f"{len(job_ids)} jobs to end", timeout=timeout)
        await self.plane.wait_quiescent(timeout=timeout)
        ends = [e for e in await self.plane.events() if e["kind"] in TERMINAL_KINDS]
        counts = Counter(e["job_id"] for e in ends if e["job_id"] in wanted)
        assert set(counts.values()) == {1}, f"jobs ended more than once: {counts}"
        return {e["job_id"]: e for e in ends if e["job_id"] in wanted}

    async def diagnosis(self, name: str) -> str:
        """What a failed wait needs to be understood: the actor as the API shows it, and the
        tail of every log of the test (manager, agents, replicas)."""
        parts = [json.dumps(await self.actor(name), indent=1)[-4000:]]
        logs = [child.log_path for child in self.processes.children]
        logs += sorted(self.workdir.glob("state-*/replicas/*/*.log"))
        for path in logs:
            lines = path.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {path.relative_to(self.workdir)}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop_agent_and_replicas(self, agent_id: str) -> None:
        """kill -9 the agent and every replica process it started (a host failure)."""
        child = self.agents.pop(agent_id)
        child.kill(signal.SIGKILL)
        child.wait(10)
        kill_processes_mentioning(str(self.workdir / f"state-{agent_id}"))


def kill_processes_mentioning(text: str) -> None:
    """kill -9 every process whose command line mentions ``text`` and every process recorded
    in the ``state.json`` files under ``text`` if it is an agent's state folder (a runtime's
    socket may live elsewhere when the folder's path is too long for a Unix socket)."""
    pids = set()
    for state in Path(text).glob("replicas/*/state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            for record in json.loads(state.read_text())["processes"].values():
                if process_start_time(int(record["pid"])) == int(
                    record["start_time"]
                ):  # not reused
                    pids.add(int(record["pid"]))
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            pids.add(int(proc.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
