"""``<service> config show``: the effective configuration with the source of every value."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from ..config.loader import LoadedConfig
from ..errors import ConfigurationError

ConfigLoader = Callable[[Path | None], LoadedConfig[Any]]

config_path_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML config file (default: ./<service>.toml, ~/.config/backend.ai/, /etc/backend.ai/)",
)


def load_or_exit(loader: ConfigLoader, config_path: Path | None) -> LoadedConfig[Any]:
    """Load the config, turning a configuration error into a CLI error (exit status 1)."""
    try:
        return loader(config_path)
    except ConfigurationError as e:
        raise click.ClickException(e.message) from None


def _display(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, ensure_ascii=False)


def render_config(loaded: LoadedConfig[Any], output_format: str) -> None:
    entries = loaded.entries()
    if output_format == "json":
        click.echo(
            json.dumps(
                {
                    "service": loaded.service,
                    "file": str(loaded.file) if loaded.file else None,
                    "values": [
                        {
                            "key": e.key,
                            "value": e.value,
                            "source": e.source.value,
                            "origin": e.origin or None,
                        }
                        for e in entries
                    ],
                    "unknown_env": list(loaded.unknown_env),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = 1000  # piped: never fold a value (URLs stay greppable)
    file_note = str(loaded.file) if loaded.file else "none found (defaults and environment)"
    table = Table(title=f"{loaded.service} configuration — file: {file_note}", title_justify="left")
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("source", no_wrap=True)
    table.add_column("origin", overflow="fold")
    for entry in entries:
        table.add_row(entry.key, _display(entry.value), entry.source.value, entry.origin)
    console.print(table)
    for var in loaded.unknown_env:
        click.echo(f"warning: {var} names no key of the {loaded.service} config; ignored", err=True)


def make_config_group(service: str, loader: ConfigLoader) -> click.Group:
    """A ``config`` group with ``show``, for a service whose config ``loader`` takes a path."""

    @click.group(name="config")
    def config_group() -> None:
        """Inspect the configuration."""

    @config_group.command(name="show")
    @config_path_option
    @click.option(
        "--format",
        "output_format",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
    )
    def show(config_path: Path | None, output_format: str) -> None:
        """Print the effective configuration and where each value came from
        (env > file > default); secrets are masked."""
        render_config(load_or_exit(loader, config_path), output_format)

    show.help = (show.help or "").replace("configuration", f"{service} configuration", 1)
    return config_group
