"""``mgr schema oneshot`` / ``mgr schema status``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from ai.backend.common.cli.config_command import config_path_option, load_or_exit
from ai.backend.common.config.loader import mask_url_password

from ..config import load_manager_config

T = TypeVar("T")


def _database_url(config_path: Path | None) -> str:
    return load_or_exit(load_manager_config, config_path).config.db.url


def run_against_database(url: str, action: str, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; a database that cannot be reached or migrated becomes a CLI error naming
    the (password-masked) URL."""
    import asyncpg
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return asyncio.run(work)
    except (OSError, SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise click.ClickException(
            f"cannot {action} {mask_url_password(url)}: {type(e).__name__}: {e}"
        ) from None


@click.group(name="schema")
def schema() -> None:
    """Create and migrate the database of record."""


@schema.command()
@config_path_option
def oneshot(config_path: Path | None) -> None:
    """Create the database if missing and upgrade it to the newest revision (idempotent)."""
    from ..models.schema import oneshot as run_oneshot

    url = _database_url(config_path)
    report = run_against_database(url, "migrate", run_oneshot(url))
    created = "created" if report.created_database else "exists"
    click.echo(f"database {report.database}: {created}")
    if report.from_revision == report.to_revision:
        click.echo(f"schema: already at head {report.to_revision}")
    else:
        click.echo(f"schema: upgraded {report.from_revision or '(empty)'} -> {report.to_revision}")


@schema.command()
@config_path_option
@click.option("--check", is_flag=True, help="exit with status 1 unless the schema is at head")
def status(config_path: Path | None, check: bool) -> None:
    """Show the database's revision, the newest revision and the tables."""
    from ..models.schema import status as read_status

    url = _database_url(config_path)
    state = run_against_database(url, "reach", read_status(url))
    click.echo(f"database: {state.database} ({'exists' if state.database_exists else 'missing'})")
    click.echo(f"current revision: {state.current_revision or '(none)'}")
    click.echo(f"head revision: {state.head_revision}")
    click.echo(f"up to date: {'yes' if state.is_current else 'no'}")
    click.echo(f"tables: {', '.join(state.tables) if state.tables else '(none)'}")
    if check and not state.is_current:
        sys.exit(1)
