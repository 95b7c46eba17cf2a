"""``mgr start-server``."""

from __future__ import annotations

from pathlib import Path

import click

from ai.backend.common.cli.config_command import config_path_option, load_or_exit

from ..config import load_manager_config


@click.command("start-server")
@config_path_option
def start_server(config_path: Path | None) -> None:
    """Serve the manager's REST API and, as the scheduling leader, place and scale replicas."""
    from ai.backend.common.log import setup_logging

    from ..server import run

    config = load_or_exit(load_manager_config, config_path).config
    setup_logging(level=config.logging.level, log_format=config.logging.format)
    run(config)
