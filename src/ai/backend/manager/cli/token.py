"""``mgr token create|list``: the gateway's API tokens straight from the database (as
``mgr keypair``); the token is printed once and only its hash is stored."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ai.backend.common.cli.config_command import config_path_option, load_or_exit

from ..config import load_manager_config

if TYPE_CHECKING:
    from ..services.api_tokens import ApiTokenService

T = TypeVar("T")


async def _with_service(db_url: str, work: Callable[[ApiTokenService], Awaitable[T]]) -> T:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from ..repositories.api_tokens import ApiTokenRepository
    from ..services.api_tokens import ApiTokenService

    engine = create_async_engine(db_url)
    try:
        service = ApiTokenService(
            ApiTokenRepository(async_sessionmaker(engine, expire_on_commit=False))
        )
        return await work(service)
    finally:
        await engine.dispose()


def _run(config_path: Path | None, work: Callable[[ApiTokenService], Awaitable[T]]) -> T:
    from ai.backend.common.errors import BackendError

    from .schema import run_against_database

    url = load_or_exit(load_manager_config, config_path).config.db.url
    try:
        return run_against_database(url, "reach", _with_service(url, work))
    except BackendError as e:
        raise click.ClickException(e.message) from None


@click.group()
def token() -> None:
    """API tokens (Authorization: Bearer) for the gateway, each acting as one keypair."""


@token.command()
@click.option("--access-key", required=True, help="the keypair the token acts as")
@click.option("--name", default=None, help="what the token is for")
@click.option(
    "--expires-in", default=None, metavar="DURATION", help="e.g. 30d, 12h (default: never)"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@config_path_option
def create(
    access_key: str,
    name: str | None,
    expires_in: str | None,
    as_json: bool,
    config_path: Path | None,
) -> None:
    """Create a token for a keypair and print it (shown only once)."""
    body: dict[str, Any] = {"access_key": access_key, "name": name, "expires_in": expires_in}
    created = _run(config_path, lambda service: service.create(body))
    if as_json:
        click.echo(json.dumps(created.model_dump(mode="json"), indent=2))
        return
    click.echo(f"token: {created.token}")
    click.echo(f"id: {created.id}  access_key: {created.access_key}")
    expires = created.expires_at.isoformat() if created.expires_at else "never"
    click.echo(f"expires: {expires}")


@token.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@config_path_option
def list_tokens(as_json: bool, config_path: Path | None) -> None:
    """List tokens (never the tokens themselves)."""
    items = _run(config_path, lambda service: service.list_all())
    if as_json:
        click.echo(json.dumps([t.model_dump(mode="json") for t in items], indent=2))
        return
    for item in items:
        expires = item.expires_at.isoformat() if item.expires_at else "never"
        click.echo(f"{item.id}  {item.access_key}  expires {expires}  {item.name or ''}".rstrip())
