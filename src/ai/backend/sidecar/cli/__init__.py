"""``./backend.ai sidecar …``: the sidecar's commands."""

from __future__ import annotations

import click

from ai.backend.common.cli.config_command import make_config_group

from ..config import load_sidecar_config


@click.group(name="sidecar")
def main() -> None:
    """Sidecar: per-replica router between an actor's stream and its runtime."""


main.add_command(make_config_group("sidecar", load_sidecar_config))
