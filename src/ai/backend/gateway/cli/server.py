"""``gw start-server``."""

from __future__ import annotations

from pathlib import Path

import click

from ai.backend.common.cli.config_command import config_path_option, load_or_exit

from ..config import load_gateway_config


@click.command("start-server")
@config_path_option
def start_server(config_path: Path | None) -> None:
    """Serve MCP tools, the jobs REST API with live progress, and KServe v2 inference."""
    from ai.backend.common.log import setup_logging

    from ..server import run

    config = load_or_exit(load_gateway_config, config_path).config
    setup_logging(level=config.logging.level, log_format=config.logging.format)
    run(config)
