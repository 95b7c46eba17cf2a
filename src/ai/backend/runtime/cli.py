"""``./backend.ai runtime …``: the runtime's commands (stdlib + click only)."""

from __future__ import annotations

import click


@click.group(name="runtime")
def main() -> None:
    """Runtime: loads a user handler and serves it to the sidecar over a Unix socket."""
