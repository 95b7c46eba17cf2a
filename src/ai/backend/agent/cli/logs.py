"""``./backend.ai ag logs REPLICA [--follow] [--runtime|--sidecar]``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ai.backend.common.cli.config_command import config_path_option, load_or_exit

from ..config import load_agent_config
from ..services.replica_files import LOG_NAMES, replicas_dir

FOLLOW_INTERVAL = 0.5


def find_replica_dir(state_dir: Path, replica: str) -> Path:
    """The folder of ``replica`` (an id or an unambiguous prefix of one)."""
    folder = replicas_dir(state_dir)
    exact = folder / replica
    if replica and exact.is_dir():
        return exact
    matches = sorted(p for p in folder.glob(f"{replica}*") if p.is_dir()) if replica else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise click.ClickException(f"no replica {replica!r} under {folder}")
    names = ", ".join(p.name for p in matches[:5])
    raise click.ClickException(f"{replica!r} names several replicas: {names}")


def _print_new(path: Path, offset: int, prefix: str) -> int:
    """Print what ``path`` holds after ``offset``; the new offset."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return offset
    if data:
        text = data.decode(errors="replace")
        if prefix:
            text = "".join(f"{prefix}{line}" for line in text.splitlines(keepends=True))
        click.echo(text, nl=False)
    return offset + len(data)


@click.command()
@click.argument("replica")
@click.option("--follow", "-f", is_flag=True, help="keep printing what is appended")
@click.option("--runtime", "only", flag_value="runtime", help="the runtime's log only")
@click.option("--sidecar", "only", flag_value="sidecar", help="the sidecar's log only")
@config_path_option
def logs(replica: str, follow: bool, only: str | None, config_path: Path | None) -> None:
    """Print the logs of REPLICA (its id, or a prefix of it): runtime, then sidecar."""
    config = load_or_exit(load_agent_config, config_path).config
    folder = find_replica_dir(config.agent.resolved_state_dir, replica)
    roles = [only] if only else list(LOG_NAMES)
    paths = [folder / LOG_NAMES[role] for role in roles]
    if not any(path.exists() for path in paths):
        raise click.ClickException(f"replica {folder.name} has no {' or '.join(roles)} log")
    prefixes = {role: (f"[{role}] " if follow and len(roles) > 1 else "") for role in roles}
    offsets = {}
    for role, path in zip(roles, paths):
        if len(roles) > 1 and not follow:
            click.echo(f"==> {path.name} <==")
        offsets[role] = _print_new(path, 0, prefixes[role])
    if not follow:
        return
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL)
            for role, path in zip(roles, paths):
                offsets[role] = _print_new(path, offsets[role], prefixes[role])
    except KeyboardInterrupt:
        pass
