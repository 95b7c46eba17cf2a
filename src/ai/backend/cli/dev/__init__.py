"""``./backend.ai dev up|status|logs|down``: the whole platform on this machine in one command.

``dev up`` uses PostgreSQL and Redis where they answer at the configured URLs and starts
private ones under the state folder where they don't; migrates the schema; creates (or reuses)
the dev keypairs; starts manager, gateway and agents as background processes with health
checks; writes the client config; applies the example actors and tools. See ``README.md`` of
``ai.backend.cli`` for the layout of the state folder.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Final

import click
from rich.console import Console

from .errors import DevStackError
from .paths import DevPaths, hold_lock
from .record import load_record
from .settings import (
    DB_URL_VARIABLE,
    DEFAULT_AGENT_PORT,
    DEFAULT_GATEWAY_PORT,
    DEFAULT_GRPC_PORT,
    DEFAULT_MANAGER_PORT,
    DEFAULT_TIMEOUT,
    REDIS_URL_VARIABLE,
    UpSettings,
    UrlChoice,
    default_db_url,
    default_redis_prefix,
    default_redis_url,
)

MAX_PORT: Final = 65535
PORT = click.IntRange(1, MAX_PORT)


@click.group(name="dev")
def main() -> None:
    """Dev stack: PostgreSQL, Redis, manager, gateway and agents on this machine."""


def _waiting(console: Console) -> None:
    console.print("another `dev up` or `dev down` is running: waiting for it")


@main.command()
@click.option(
    "--agents",
    type=click.IntRange(1, 32),
    default=1,
    show_default=True,
    envvar="BACKEND_DEV_AGENTS",
    show_envvar=True,
    help="agents to run",
)
@click.option(
    "--mock-gpus",
    type=click.IntRange(0, 64),
    default=2,
    show_default=True,
    envvar="BACKEND_DEV_MOCK_GPUS",
    show_envvar=True,
    help="mock GPUs per agent; 0: the agents detect real GPUs (NVML, nvidia-smi)",
)
@click.option(
    "--manager-port",
    type=PORT,
    default=DEFAULT_MANAGER_PORT,
    show_default=True,
    envvar="BACKEND_DEV_MANAGER_PORT",
    show_envvar=True,
)
@click.option(
    "--gateway-port",
    type=PORT,
    default=DEFAULT_GATEWAY_PORT,
    show_default=True,
    envvar="BACKEND_DEV_GATEWAY_PORT",
    show_envvar=True,
)
@click.option(
    "--grpc-port",
    type=PORT,
    default=DEFAULT_GRPC_PORT,
    show_default=True,
    envvar="BACKEND_DEV_GRPC_PORT",
    show_envvar=True,
    help="the gateway's KServe gRPC",
)
@click.option(
    "--agent-port",
    type=PORT,
    default=DEFAULT_AGENT_PORT,
    show_default=True,
    envvar="BACKEND_DEV_AGENT_PORT",
    show_envvar=True,
    help="the first agent's port; the next agents take the following ones",
)
@click.option(
    "--db-url",
    default=None,
    help=f"PostgreSQL (SQLAlchemy URL); default ${DB_URL_VARIABLE}, else"
    f" {default_db_url()}; an embedded one starts when it does not answer",
)
@click.option(
    "--redis-url",
    default=None,
    help=f"Redis; default ${REDIS_URL_VARIABLE}, else {default_redis_url()};"
    " an embedded one starts when it does not answer",
)
@click.option(
    "--examples",
    "examples_manifest",
    type=click.Path(path_type=Path),
    default=None,
    envvar="BACKEND_DEV_EXAMPLES",
    show_envvar=True,
    help="the example actors and tools to deploy; default examples/dev-stack.yaml",
)
@click.option("--no-examples", is_flag=True, help="deploy no example actors or tools")
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    envvar="BACKEND_DEV_TIMEOUT",
    show_envvar=True,
    help="seconds each service may take to become healthy",
)
def up(
    agents: int,
    mock_gpus: int,
    manager_port: int,
    gateway_port: int,
    grpc_port: int,
    agent_port: int,
    db_url: str | None,
    redis_url: str | None,
    examples_manifest: Path | None,
    no_examples: bool,
    timeout: float,
) -> None:
    """Bring the dev stack up (what already runs healthy is kept)."""
    from .console import StepPrinter
    from .examples import default_manifest
    from .summary import print_summary
    from .up import bring_up

    last_agent_port = agent_port + agents - 1
    if last_agent_port > MAX_PORT:
        raise click.BadParameter(
            f"{agents} agents from port {agent_port} need ports up to {last_agent_port},"
            f" past {MAX_PORT}: choose a lower --agent-port or fewer --agents",
            param_hint="'--agent-port'",
        )
    settings = UpSettings(
        agents=agents,
        mock_gpus=mock_gpus,
        manager_port=manager_port,
        gateway_port=gateway_port,
        grpc_port=grpc_port,
        agent_port=agent_port,
        db=UrlChoice.resolve(db_url, DB_URL_VARIABLE, default_db_url()),
        redis=UrlChoice.resolve(redis_url, REDIS_URL_VARIABLE, default_redis_url()),
        redis_prefix=default_redis_prefix(),
        timeout=timeout,
        examples=None if no_examples else (examples_manifest or default_manifest()),
    )
    paths = DevPaths.discover()
    console = Console(highlight=False)
    with hold_lock(paths, waiting_message=lambda: _waiting(console)):
        record, client_config = asyncio.run(bring_up(settings, paths, StepPrinter(console)))
    print_summary(console, record, client_config.path)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
def status(as_json: bool) -> None:
    """Services (pid, port, health) and actors with their replicas. Exit status 1 when a
    service is not healthy or nothing was started."""
    from .status import StackStatus, print_status, read_status

    paths = DevPaths.discover()
    record = load_record(paths.stack_file)
    if record is None:
        state = StackStatus(state_dir=paths.root, services=[], actors=[], actors_error="no stack")
    else:
        state = asyncio.run(read_status(record))
    if as_json:
        click.echo(state.model_dump_json(indent=2))
    elif record is None:
        click.echo(f"no dev stack at {paths.root}: start one with `./backend.ai dev up`")
    else:
        print_status(Console(highlight=False), state)
    sys.exit(0 if state.healthy else 1)


@main.command()
@click.option("--service", "-s", default=None, help="one service (manager, gateway, agent-1 …)")
@click.option("--follow", "-f", is_flag=True, help="keep printing new lines")
@click.option(
    "--tail",
    "-n",
    "count",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    help="lines of each log to show first",
)
def logs(service: str | None, follow: bool, count: int) -> None:
    """The logs of the stack's services."""
    from .logs import follow as follow_files
    from .logs import log_files, print_tails

    paths = DevPaths.discover()
    files = log_files(load_record(paths.stack_file), paths)
    if not files:
        raise DevStackError(f"no logs under {paths.root}: start the stack with `dev up`")
    if service is not None:
        if service not in files:
            raise click.UsageError(f"no log of {service!r}; the services are: {', '.join(files)}")
        files = {service: files[service]}
    if follow:
        follow_files(files, count)
    else:
        print_tails(files, count)


@main.command()
@click.option("--purge", is_flag=True, help="also delete the state folder (data, logs, keys)")
@click.option(
    "--timeout",
    type=click.FloatRange(0),
    default=15.0,
    show_default=True,
    help="seconds a process may take to stop before it is killed",
)
def down(purge: bool, timeout: float) -> None:
    """Stop the dev stack (gracefully, then forcibly); the data stays unless --purge."""
    from .console import StepPrinter
    from .down import purge as purge_state
    from .down import stop_stack, stop_unrecorded_data_services

    paths = DevPaths.discover()
    console = Console(highlight=False)
    printer = StepPrinter(console)
    with hold_lock(paths, waiting_message=lambda: _waiting(console)):
        record = load_record(paths.stack_file)
        if record is None:
            printer.note(f"no dev stack recorded at {paths.stack_file}")
            asyncio.run(stop_unrecorded_data_services(paths, printer, grace=timeout))
        else:
            asyncio.run(stop_stack(record, paths, printer, grace=timeout))
        if purge:
            purge_state(record, paths, printer)
