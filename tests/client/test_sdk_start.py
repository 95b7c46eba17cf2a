"""``AsyncSession.start()`` / ``Session.start()``: a manager that answers is used as it is;
when nothing answers, the dev-up command runs (here a stand-in that writes the client.toml of
a running manager, as ``dev up`` does) and the session opens on what it wrote; a failing
command is an error carrying its output; only an endpoint on this machine is ever started."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ai.backend.client import AsyncSession, ClientConfig, Session
from ai.backend.client.dev_stack import is_local
from ai.backend.client.exceptions import DevStackError, ServerUnreachable
from ai.backend.testutils.control_plane import RunningManager
from ai.backend.testutils.services import free_port

CREW = ["error-end", "happy-end"]


def writes_client_toml(target: Path, manager: RunningManager, arguments_file: Path) -> list[str]:
    """A stand-in for ``dev up``: writes the client configuration of ``manager`` and the
    arguments it got."""
    toml = (
        "[client]\n"
        f'endpoint = "{manager.endpoint}"\n'
        'gateway_endpoint = "http://127.0.0.1:1"\n'
        f'access_key = "{manager.admin.access_key}"\n'
        f'secret_key = "{manager.admin.secret_key}"\n'
    )
    script = (
        "import pathlib, sys\n"
        f"target = pathlib.Path({str(target)!r})\n"
        "target.parent.mkdir(parents=True, exist_ok=True)\n"
        f"target.write_text({toml!r})\n"
        f"pathlib.Path({str(arguments_file)!r}).write_text(' '.join(sys.argv[1:]))\n"
        "print('stack is up')\n"
    )
    return [sys.executable, "-c", script]


def nothing_at_a_local_port() -> ClientConfig:
    return ClientConfig(endpoint=f"http://127.0.0.1:{free_port()}")


async def test_start_runs_dev_up_when_nothing_answers_and_uses_what_it_wrote(
    manager: RunningManager, isolated_client_config: Path, tmp_path: Path
) -> None:
    silent = nothing_at_a_local_port()
    arguments_file = tmp_path / "dev-up-arguments"
    command = writes_client_toml(isolated_client_config, manager, arguments_file)
    async with AsyncSession.start(
        agents=2, mock_gpus=1, config=silent, dev_up_command=command, echo=False
    ) as session:
        assert (session.config.endpoint, session.config.access_key) == (
            manager.endpoint,
            manager.admin.access_key,
        )
        assert session.config.source_file == isolated_client_config
        assert sorted(actor.name for actor in await session.actors.list()) == CREW
    port = silent.endpoint.rsplit(":", 1)[1]
    assert arguments_file.read_text() == f"--agents 2 --mock-gpus 1 --manager-port {port}"

    arguments_file.unlink()
    with Session.start(config=silent, dev_up_command=command, echo=False) as sync_session:
        assert sorted(actor.name for actor in sync_session.actors.list()) == CREW
    assert arguments_file.read_text() == f"--manager-port {port}"


async def test_start_uses_a_manager_that_answers_without_running_dev_up(
    manager: RunningManager, tmp_path: Path
) -> None:
    config = ClientConfig(
        endpoint=manager.endpoint,
        access_key=manager.admin.access_key,
        secret_key=manager.admin.secret_key,
    )
    marker = tmp_path / "dev-up-ran"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    async with AsyncSession.start(config=config, dev_up_command=command) as session:
        assert sorted(actor.name for actor in await session.actors.list()) == CREW
    assert not marker.exists()


async def test_a_failing_dev_up_is_an_error_with_its_output() -> None:
    command = [
        sys.executable,
        "-u",  # stdout unbuffered: the two lines come in the order they were written
        "-c",
        "import sys; print('starting PostgreSQL'); print('error: port 8081 is in use',"
        " file=sys.stderr); sys.exit(3)",
    ]
    with pytest.raises(DevStackError) as failed:
        async with AsyncSession.start(
            config=nothing_at_a_local_port(), dev_up_command=command, echo=False
        ):
            pass
    assert failed.value.output == "starting PostgreSQL\nerror: port 8081 is in use"
    assert str(failed.value).endswith(
        "` failed (exit status 3)\nstarting PostgreSQL\nerror: port 8081 is in use"
    )


async def test_dev_up_that_leaves_nothing_running_is_an_error(
    isolated_client_config: Path,
) -> None:
    silent = nothing_at_a_local_port()
    still_silent = f"http://127.0.0.1:{free_port()}"
    script = (
        "import pathlib\n"
        f"target = pathlib.Path({str(isolated_client_config)!r})\n"
        "target.parent.mkdir(parents=True)\n"
        f"target.write_text('[client]\\nendpoint = \"{still_silent}\"\\n')\n"
        "print('pretending')\n"
    )
    with pytest.raises(DevStackError) as failed:
        async with AsyncSession.start(
            config=silent, dev_up_command=[sys.executable, "-c", script], echo=False
        ):
            pass
    assert str(failed.value) == (
        f"`dev up` finished, but nothing answers at {still_silent} (client configuration:"
        f" {isolated_client_config})\npretending"
    )


async def test_a_remote_endpoint_is_never_started_here() -> None:
    remote = ClientConfig(endpoint="http://no-such-host.invalid:8081")
    with pytest.raises(ServerUnreachable) as unreachable:
        async with AsyncSession.start(config=remote, dev_up_command=["false"]):
            pass
    assert (unreachable.value.url, unreachable.value.reason) == (
        "http://no-such-host.invalid:8081",
        "nothing answers (a dev stack is only started on this machine)",
    )


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8081", True),
        ("http://127.1.2.3:8081", True),
        ("http://[::1]:8081", True),
        ("http://localhost:8081", True),
        ("http://LOCALHOST", True),
        ("http://127.example.com:8081", False),
        ("http://127.0.0.1.nip.io:8081", False),
        ("http://localhost.example.com", False),
        ("http://10.0.0.5:8081", False),
        ("http://[2001:db8::1]:8081", False),
        ("http://manager:8081", False),
    ],
)
def test_only_a_loopback_address_or_localhost_is_this_machine(url: str, local: bool) -> None:
    assert is_local(url) is local


async def test_a_dns_name_that_looks_like_loopback_is_never_started_here() -> None:
    remote = ClientConfig(endpoint="http://127.no-such-host.invalid:8081")
    with pytest.raises(ServerUnreachable) as unreachable:
        async with AsyncSession.start(config=remote, dev_up_command=["false"]):
            pass
    assert unreachable.value.reason == (
        "nothing answers (a dev stack is only started on this machine)"
    )
