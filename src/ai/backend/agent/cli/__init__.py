"""``./backend.ai ag …``: the agent's commands."""

from __future__ import annotations

import click

from ai.backend.common.cli.config_command import make_config_group

from ..config import load_agent_config


@click.group(name="ag")
def main() -> None:
    """Agent: node daemon that runs replicas on this machine's CPUs and GPUs."""


main.add_command(make_config_group("agent", load_agent_config))
