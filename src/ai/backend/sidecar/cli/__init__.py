"""``./backend.ai sidecar …``: the sidecar's commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ai.backend.common.cli.config_command import config_path_option, load_or_exit, make_config_group
from ai.backend.common.dto.actor_spec import ActorSpec

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
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="the actor's spec (YAML, as for actor apply); replaces the config's [actor]",
)
@click.option(
    "--status-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="written (JSON: pid, state, the runtime's hello) once serving; for the agent",
)
@config_path_option
def run(
    actor: str,
    socket_path: Path | None,
    consumer: str | None,
    concurrency: int | None,
    spec_path: Path | None,
    status_file: Path | None,
    config_path: Path | None,
) -> None:
    """Consume ACTOR's stream and route its envelopes until SIGTERM.

    The actor's spec (timeout, retry, concurrency, execution) comes from --spec or the config's
    [actor] table; without one, defaults apply and the concurrency is the runtime's. With
    `execution: inprocess` the sidecar loads and runs the handler itself (no runtime, no
    --socket; exit status 3: the handler cannot be loaded)."""
    from ai.backend.common.dto.base import RESERVED_ACTOR_NAMES, check_actor_name
    from ai.backend.common.log import setup_logging

    from ..server import SidecarOptions, is_inprocess, run

    try:
        check_actor_name(actor)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--actor") from None
    loaded = load_or_exit(load_sidecar_config, config_path)
    config = loaded.config
    if spec_path is not None:
        config = config.model_copy(update={"actor": load_spec_or_exit(spec_path)})
    if config.actor is not None and config.actor.name != actor:
        raise click.UsageError(f"the actor's spec is for {config.actor.name!r}, not {actor!r}")
    inprocess = is_inprocess(config)
    if inprocess and socket_path is not None:
        raise click.UsageError(f"actor {actor} runs in-process (execution: inprocess): no --socket")
    if socket_path is None and config.sidecar.socket is not None and not inprocess:
        socket_path = config.sidecar.socket
    if actor not in RESERVED_ACTOR_NAMES and socket_path is None and not inprocess:
        raise click.UsageError(f"actor {actor} needs --socket (the runtime's socket)")
    setup_logging(level=config.logging.level, log_format=config.logging.format)
    handler = None
    if inprocess:
        from ai.backend.runtime.entry import EXIT_BAD_HANDLER
        from ai.backend.runtime.loader import HandlerLoadError, load_handler

        assert config.actor is not None
        os.environ.update(config.actor.env)  # before the handler's module is imported
        try:
            handler = load_handler(config.actor.handler, config.actor.pythonpath)
        except HandlerLoadError as e:
            click.echo(f"sidecar: {e}", err=True)
            sys.exit(EXIT_BAD_HANDLER)
    run(config, SidecarOptions(actor, socket_path, consumer, concurrency, handler, status_file))


def load_spec_or_exit(path: Path) -> ActorSpec:
    """The actor spec in ``path``, or exit with status 2 and a message naming the field."""
    from pydantic import ValidationError

    from ai.backend.common.dto.base import summarize_validation_error

    try:
        return ActorSpec.from_yaml(path.read_text())
    except ValidationError as e:
        raise click.BadParameter(summarize_validation_error(e), param_hint="--spec") from None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--spec") from None
