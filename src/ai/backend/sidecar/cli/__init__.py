"""``./backend.ai sidecar …``: the sidecar's commands."""

from __future__ import annotations

from pathlib import Path

import click

from ai.backend.common.cli.config_command import config_path_option, load_or_exit, make_config_group

from ..config import load_sidecar_config


@click.group(name="sidecar")
def main() -> None:
    """Sidecar: per-replica router between an actor's stream and its runtime."""


main.add_command(make_config_group("sidecar", load_sidecar_config))


@main.command()
@click.option("--actor", required=True, help="the actor whose stream to consume (or a crew name)")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="the runtime's Unix socket (not for happy-end / error-end)",
)
@click.option("--consumer", default=None, help="consumer name in the group (default host-pid)")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="envelopes in flight")
@config_path_option
def run(
    actor: str,
    socket_path: Path | None,
    consumer: str | None,
    concurrency: int | None,
    config_path: Path | None,
) -> None:
    """Consume ACTOR's stream and route its envelopes until SIGTERM.

    The actor's spec (timeout, retry, concurrency) comes from the config's [actor] table; without
    one, defaults apply and the concurrency is the runtime's."""
    from ai.backend.common.dto.base import RESERVED_ACTOR_NAMES, check_actor_name
    from ai.backend.common.log import setup_logging

    from ..server import SidecarOptions, run

    try:
        check_actor_name(actor)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--actor") from None
    loaded = load_or_exit(load_sidecar_config, config_path)
    config = loaded.config
    if config.actor is not None and config.actor.name != actor:
        raise click.UsageError(f"the config's [actor] is {config.actor.name!r}, not {actor!r}")
    if socket_path is None and config.sidecar.socket is not None:
        socket_path = config.sidecar.socket
    if actor not in RESERVED_ACTOR_NAMES and socket_path is None:
        raise click.UsageError(f"actor {actor} needs --socket (the runtime's socket)")
    setup_logging(level=config.logging.level, log_format=config.logging.format)
    run(config, SidecarOptions(actor, socket_path, consumer, concurrency))
