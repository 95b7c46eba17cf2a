"""``mgr keypair create|list``: keypairs straight from the database (bootstraps the first admin
without an existing key)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from ai.backend.common.cli.config_command import config_path_option, load_or_exit

from ..config import load_manager_config


async def _with_repository(db_url: str, work: str, **kwargs: Any) -> Any:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from ..repositories.keypairs import KeypairRepository

    engine = create_async_engine(db_url)
    try:
        repository = KeypairRepository(async_sessionmaker(engine, expire_on_commit=False))
        return await getattr(repository, work)(**kwargs)
    finally:
        await engine.dispose()


def _run(config_path: Path | None, work: str, **kwargs: Any) -> Any:
    from .schema import run_against_database

    url = load_or_exit(load_manager_config, config_path).config.db.url
    return run_against_database(url, "reach", _with_repository(url, work, **kwargs))


@click.group()
def keypair() -> None:
    """Keypairs (access key + secret key) for users, admins and agents."""


@keypair.command()
@click.option("--admin", "role", flag_value="admin", help="an admin keypair")
@click.option(
    "--role",
    "role",
    type=click.Choice(["user", "admin", "agent", "gateway"]),
    default="user",
    show_default=True,
    help="agent: may only send heartbeats; gateway: may only read the model registry",
)
@click.option("--user", "user_name", default=None, help="whose keypair (default: the role)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option(
    "--export-as",
    metavar="PREFIX",
    default=None,
    help="print `export PREFIXACCESS_KEY=… PREFIXSECRET_KEY=…` for eval, e.g. BACKEND_"
    " (a client) or BACKEND_MANAGER__ (an agent's config)",
)
@config_path_option
def create(
    role: str,
    user_name: str | None,
    as_json: bool,
    export_as: str | None,
    config_path: Path | None,
) -> None:
    """Create a keypair and print its access and secret key (shown only once)."""
    created = _run(config_path, "create", user_name=user_name or role, role=role)
    if export_as is not None:
        click.echo(f"export {export_as}ACCESS_KEY={shlex.quote(created.access_key)}")
        click.echo(f"export {export_as}SECRET_KEY={shlex.quote(created.secret_key)}")
        return
    if as_json:
        click.echo(json.dumps(created.model_dump(mode="json"), indent=2))
        return
    click.echo(f"access_key: {created.access_key}")
    click.echo(f"secret_key: {created.secret_key}")
    click.echo(f"role: {created.role}  user: {created.user_name}")


@keypair.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@config_path_option
def list_keypairs(as_json: bool, config_path: Path | None) -> None:
    """List keypairs (never their secrets)."""
    items = _run(config_path, "list_all")
    if as_json:
        click.echo(json.dumps([k.model_dump(mode="json") for k in items], indent=2))
        return
    for item in items:
        state = "active" if item.is_active else "inactive"
        click.echo(f"{item.access_key}  {item.role:<5}  {item.user_name}  {state}")
