"""``./backend.ai ag …``: the agent's commands."""

from __future__ import annotations

from pathlib import Path

import click

from ai.backend.common.cli.config_command import config_path_option, load_or_exit, make_config_group

from ..config import load_agent_config
from .logs import logs


@click.group(name="ag")
def main() -> None:
    """Agent: node daemon that runs replicas on this machine's CPUs and GPUs."""


main.add_command(make_config_group("agent", load_agent_config))
main.add_command(logs)


@main.command("start-server")
@config_path_option
def start_server(config_path: Path | None) -> None:
    """Run the agent until SIGTERM: detect resources, heartbeat to the manager, run the replicas
    it wants. On SIGTERM the replicas keep running; the next start adopts them."""
    from ai.backend.common.log import setup_logging

    from ..server import run

    loaded = load_or_exit(load_agent_config, config_path)
    config = loaded.config
    setup_logging(level=config.logging.level, log_format=config.logging.format)
    run(config)
