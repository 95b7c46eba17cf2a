"""``./backend.ai gw …``: the gateway's commands."""

from __future__ import annotations

import click

from ai.backend.common.cli.config_command import make_config_group

from ..config import load_gateway_config
from .server import start_server


@click.group(name="gw")
def main() -> None:
    """Gateway: MCP tools, jobs REST API with live progress, KServe v2 inference."""


main.add_command(make_config_group("gateway", load_gateway_config))
main.add_command(start_server)
