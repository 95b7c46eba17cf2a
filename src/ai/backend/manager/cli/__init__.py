"""``./backend.ai mgr …``: the manager's commands."""

from __future__ import annotations

import click

from ai.backend.common.cli.config_command import make_config_group

from ..config import load_manager_config
from .keypair import keypair
from .schema import schema
from .server import start_server
from .token import token


@click.group(name="mgr")
def main() -> None:
    """Manager: control plane (actors, agents, scheduler, database of record)."""


main.add_command(make_config_group("manager", load_manager_config))
main.add_command(schema)
main.add_command(keypair)
main.add_command(token)
main.add_command(start_server)
