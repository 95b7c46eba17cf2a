"""The dev stack's parts called directly (no stack; an embedded PostgreSQL or Redis in
``tmp_path`` at most, each test a few seconds): what ``dev up`` and ``dev down`` do with stale
pid files, unrecorded data services, the socket folder, a client config of another cluster,
ports at the top of the range, a manager that answers badly, and recycled pids."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from rich.console import Console

import ai.backend.cli.__main__  # noqa: F401  (what the children run)
import ai.backend.cli.dev  # noqa: F401  (`dev`: named by a string in main.py, packed for Pants)
import ai.backend.gateway.cli  # noqa: F401  (started by `dev up`)
from ai.backend.agent.clients.processes import process_start_time
from ai.backend.cli.dev import main as dev_group
from ai.backend.cli.dev.client_config import restore_client_config, write_client_config
from ai.backend.cli.dev.console import StepPrinter
from ai.backend.cli.dev.down import stop_unrecorded_data_services
from ai.backend.cli.dev.embedded import (
    postgres_answers,
    redis_answers,
    start_embedded_postgres,
    start_embedded_redis,
)
from ai.backend.cli.dev.embedded_processes import find_postmaster
from ai.backend.cli.dev.errors import DevStackError
from ai.backend.cli.dev.examples import ExamplesManifest, ExamplesOutcome, apply_actors
from ai.backend.cli.dev.manager_api import ManagerApi
from ai.backend.cli.dev.paths import DevPaths, ensure_private_dir, unix_socket_path
from ai.backend.cli.dev.processes import is_running, signal_process, stop_processes
from ai.backend.cli.dev.record import (
    DataServiceRecord,
    KeypairRecord,
    ProcessRecord,
    ServiceKind,
    ServiceRecord,
    StackRecord,
)
from ai.backend.testutils.services import free_port


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is none of the stack's."""
    child = subprocess.Popen(["sleep", "60"])
    yield child
    child.kill()
    child.wait()


def _quiet_printer() -> tuple[StepPrinter, io.StringIO]:
    output = io.StringIO()
    return StepPrinter(Console(file=output, width=200, highlight=False)), output


async def test_a_stale_postmaster_pid_naming_another_process_is_not_taken_for_postgres(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    data_dir = tmp_path / "postgres"
    first = await start_embedded_postgres(data_dir)  # initdb, start
    assert first.process is not None
    await stop_processes([first.process], grace=10, signum=signal.SIGINT)
    # as after a crash: postmaster.pid left behind, its pid now another program's
    (data_dir / "postmaster.pid").write_text(
        f"{sleeper.pid}\n{data_dir}\n{int(time.time())}\n5432\n{data_dir}\n\n  0 0\nready   \n"
    )
    started = await start_embedded_postgres(data_dir)
    try:
        assert started.process is not None and started.process.pid != sleeper.pid
        assert find_postmaster(data_dir) == started.process
        assert await postgres_answers(started.url)
        assert sleeper.poll() is None  # not signalled
    finally:
        await stop_processes([started.process] if started.process else [], grace=10)


async def test_an_unrecorded_embedded_redis_is_reused_or_stopped_never_doubled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    paths = DevPaths(tmp_path / "state")
    paths.prepare()
    paths.redis_dir.mkdir()
    (paths.redis_dir / "redis.pid").write_text(f"{sleeper.pid}\n")  # a stale pid file

    async def start() -> tuple[DataServiceRecord, list[DataServiceRecord]]:
        recorded: list[DataServiceRecord] = []
        started = await start_embedded_redis(
            paths.redis_dir,
            paths.redis_socket,
            paths.log_file("redis"),
            timeout=20,
            on_started=recorded.append,
        )
        return started, recorded

    first, recorded = await start()
    assert first.process is not None and first.process.pid != sleeper.pid
    assert recorded == [first]  # known before it answered
    assert sleeper.poll() is None

    again, _ = await start()  # as after a `dev up` killed before it recorded the first
    assert again.process == first.process

    paths.redis_socket.unlink()  # it runs, but no longer answers where the stack looks
    replaced, _ = await start()
    assert replaced.process is not None and replaced.process != first.process
    assert not is_running(first.process)
    assert await redis_answers(replaced.url)

    printer, output = _quiet_printer()
    await stop_unrecorded_data_services(paths, printer, grace=5)  # `dev down`, nothing recorded
    assert not is_running(replaced.process)
    assert f"redis (embedded, not recorded) (pid {replaced.process.pid}) stopped" in (
        output.getvalue()
    )


def test_the_socket_folder_outside_the_state_folder_must_be_this_users_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_path = tmp_path / ("x" * 100) / "redis.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    socket_path = unix_socket_path(long_path)
    assert socket_path.parent.parent == tmp_path and socket_path.name == "redis.sock"
    ensure_private_dir(socket_path.parent)
    assert stat.S_IMODE(os.lstat(socket_path.parent).st_mode) == 0o700

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(DevStackError) as refused:
        ensure_private_dir(shared)
    assert refused.value.message == (
        f"{shared} has mode 755, not 700: refusing to put the stack's sockets there; remove it"
        " (or set XDG_RUNTIME_DIR to a folder of your own)"
    )
    link = tmp_path / "link"
    link.symlink_to(socket_path.parent)
    with pytest.raises(DevStackError) as refused:
        ensure_private_dir(link)
    assert refused.value.message.startswith(f"{link} is a link: refusing")


def _stack_record(tmp_path: Path, manager_port: int, gateway_port: int) -> StackRecord:
    def service(name: str, kind: ServiceKind, port: int) -> ServiceRecord:
        return ServiceRecord(
            name=name,
            kind=kind,
            process=ProcessRecord(pid=1, start_time=1),
            port=port,
            url=f"http://127.0.0.1:{port}",
            health_url=f"http://127.0.0.1:{port}/health",
            log=tmp_path / f"{name}.log",
            config=tmp_path / f"{name}.toml",
        )

    return StackRecord(
        state_dir=tmp_path,
        redis_prefix="test",
        keypairs={"admin": KeypairRecord(access_key="AKIADEVNEW", secret_key="dev-secret")},
        services={
            "manager": service("manager", ServiceKind.MANAGER, manager_port),
            "gateway": service("gateway", ServiceKind.GATEWAY, gateway_port),
        },
    )


def test_dev_up_keeps_aside_a_client_config_of_another_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config" / "client.toml"
    monkeypatch.setenv("BACKEND_CLIENT_CONFIG", str(path))
    record = _stack_record(tmp_path, 18081, 18090)
    dev_config = (
        '[client]\nendpoint = "http://127.0.0.1:18081"\n'
        'gateway_endpoint = "http://127.0.0.1:18090"\n'
        'access_key = "AKIADEVNEW"\nsecret_key = "dev-secret"\n'
    )

    written = write_client_config(record, {"AKIADEVOLD"})  # none there: written
    assert (written.backup, path.read_text(), stat.S_IMODE(path.stat().st_mode)) == (
        None,
        dev_config,
        0o600,
    )
    for ours in (  # an earlier dev keypair; this stack's endpoints with keys made by hand
        '[client]\nendpoint = "http://cluster.example.com"\naccess_key = "AKIADEVOLD"\n',
        '[client]\nendpoint = "http://localhost:18081/"\naccess_key = "AKIAMINE"\n',
    ):
        path.write_text(ours)
        assert write_client_config(record, {"AKIADEVOLD"}).backup is None
        assert path.read_text() == dev_config

    theirs = '[client]\nendpoint = "https://cluster.example.com"\naccess_key = "AKIAREAL"\n'
    path.write_text(theirs)
    written = write_client_config(record, {"AKIADEVOLD"})
    assert written.backup is not None and written.backup.read_text() == theirs
    assert written.backup.name.startswith("client.toml.bak-")
    assert written.previous_endpoint == "https://cluster.example.com"
    assert path.read_text() == dev_config
    assert sorted(p.name for p in path.parent.iterdir()) == ["client.toml", written.backup.name]

    record.client_config_backup = written.backup  # `dev down --purge` puts it back
    assert restore_client_config(record) == (True, written.backup)
    assert path.read_text() == theirs and not written.backup.exists()


def test_too_many_agents_for_the_last_ports_is_a_usage_error() -> None:
    done = CliRunner().invoke(dev_group, ["up", "--agent-port", "65535", "--agents", "2"])
    assert done.exit_code == 2
    assert (
        "Invalid value for '--agent-port': 2 agents from port 65535 need ports up to 65536,"
        " past 65535: choose a lower --agent-port or fewer --agents"
    ) in " ".join(done.output.split())


async def test_example_actors_on_a_manager_that_does_not_answer_properly_are_one_line(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    spec = tmp_path / "echo.yaml"
    spec.write_text("name: dev-echo\nhandler: dev_echo:echo\n")
    manifest = ExamplesManifest(actors=[str(spec)])
    keys = KeypairRecord(access_key="AKIATEST", secret_key="secret")

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>oops</html>")

    app = web.Application()
    app.router.add_put("/v1/actors/{name}", not_json)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        outcome = ExamplesOutcome()
        await apply_actors(ManagerApi(http, f"http://127.0.0.1:{port}", keys), manifest, outcome)
        assert outcome.notes == [
            f"actor dev-echo ({spec}) not applied: HTTP 200: not JSON: '<html>oops</html>'"
        ]
    finally:
        await runner.cleanup()

    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DevStackError) as failed:
        await apply_actors(ManagerApi(http, closed, keys), manifest, ExamplesOutcome())
    assert failed.value.message.startswith(
        f"the example actors were not applied: the manager at {closed} did not answer ("
    )


def test_a_signal_reaches_a_recorded_process_only_while_it_is_that_process(
    sleeper: subprocess.Popen[bytes],
) -> None:
    start_time = process_start_time(sleeper.pid)
    assert start_time is not None
    recycled = ProcessRecord(pid=sleeper.pid, start_time=start_time - 1)
    assert not signal_process(recycled, signal.SIGHUP)
    assert sleeper.poll() is None
    assert signal_process(ProcessRecord(pid=sleeper.pid, start_time=start_time), signal.SIGHUP)
    assert sleeper.wait(10) == -signal.SIGHUP
