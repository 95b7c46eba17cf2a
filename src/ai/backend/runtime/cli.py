"""``./backend.ai runtime …``: the runtime's commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ai.backend.common.framing import DEFAULT_MAX_FRAME
from ai.backend.common.types.units import parse_size


@click.group(name="runtime")
def main() -> None:
    """Runtime: loads a user handler and serves it to the sidecar over a Unix socket."""


@main.command()
@click.option("--handler", required=True, help="the handler, as package.module:attribute")
@click.option(
    "--socket",
    "socket_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Unix socket to serve on (parent created, stale socket replaced, mode 0660)",
)
@click.option(
    "--pythonpath",
    multiple=True,
    type=click.Path(file_okay=False),
    help="directory put in front of sys.path (repeatable)",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-frame", default=str(DEFAULT_MAX_FRAME), help="largest frame, e.g. 64m")
@click.option("--log-level", default="INFO", show_default=True)
@click.option(
    "--exit-when-stuck",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="exit (status 4) when a sync handler still runs this long after its call was cancelled",
)
def run(
    handler: str,
    socket_path: Path,
    pythonpath: tuple[str, ...],
    concurrency: int,
    max_frame: str,
    log_level: str,
    exit_when_stuck: float | None,
) -> None:
    """Serve HANDLER on SOCKET until SIGTERM (exit status 3: the handler cannot be loaded)."""
    from .entry import start

    try:
        frame_limit = parse_size(max_frame)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--max-frame") from None
    sys.exit(
        start(
            handler=handler,
            socket_path=socket_path,
            pythonpath=pythonpath,
            concurrency=concurrency,
            max_frame=frame_limit,
            log_level=log_level,
            exit_when_stuck=exit_when_stuck,
        )
    )
