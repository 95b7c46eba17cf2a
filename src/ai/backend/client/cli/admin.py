"""``backend.ai admin …``: keypairs and gateway API tokens (needs an admin keypair)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import click

from .base import EXIT_CODES_HELP, ClientGroup, client_group, run_session
from .output import json_option, print_json, print_table
from .params import DURATION

if TYPE_CHECKING:
    from ai.backend.client import AsyncSession
    from ai.backend.common.dto.gateway_api import ApiTokenCreated, ApiTokenInfo
    from ai.backend.common.dto.manager_api import KeypairCreated, KeypairInfo, KeypairRoleName


@client_group(epilog=EXIT_CODES_HELP)
def admin() -> None:
    """Administration: keypairs (who may call the platform) and API tokens (Bearer tokens for
    the gateway). Needs an admin keypair.

    \b
    backend.ai admin keypair create --user alice
    backend.ai admin keypair ls
    backend.ai admin token create AKIA… --name notebook --expires-in 30d
    """


@admin.group(cls=ClientGroup)
def keypair() -> None:
    """Keypairs: the credentials that sign requests.

    A keypair is an access key and a secret key; the CLI and the SDK sign every request with
    one (BACKEND_ACCESS_KEY / BACKEND_SECRET_KEY, or client.toml).
    """


@keypair.command("create")
@click.option(
    "--role",
    type=click.Choice(["user", "admin", "agent", "gateway"]),
    default="user",
    show_default=True,
    help="agent: may only send heartbeats; gateway: may only read the model registry.",
)
@click.option("--user", "user_name", default=None, help="Whose keypair (default: the role).")
@click.option("--rate-limit", type=click.IntRange(min=1), default=None, help="Requests per minute.")
@json_option
def create_keypair(role: str, user_name: str | None, rate_limit: int | None, as_json: bool) -> None:
    """Create a keypair and print it, once.

    The secret key is shown only in this answer.
    """

    async def work(session: AsyncSession) -> KeypairCreated:
        keypair_role = cast("KeypairRoleName", role)  # one of the click.Choice values
        return await session.admin.keypairs.create(keypair_role, user_name, rate_limit=rate_limit)

    created = run_session(work)
    if as_json:
        print_json(created)
        return
    click.echo(f"access_key: {created.access_key}")
    click.echo(f"secret_key: {created.secret_key}")
    click.echo("the secret key is shown only now: keep it somewhere safe", err=True)


@keypair.command("ls")
@json_option
def list_keypairs(as_json: bool) -> None:
    """List keypairs (never their secret keys)."""

    async def work(session: AsyncSession) -> list[KeypairInfo]:
        return list(await session.admin.keypairs.list())

    keypairs = run_session(work)
    if as_json:
        print_json(keypairs)
        return
    print_table(
        ["ACCESS KEY", "USER", "ROLE", "ACTIVE", "RATE LIMIT", "CREATED"],
        (
            [k.access_key, k.user_name, k.role, k.is_active, k.rate_limit, k.created_at]
            for k in keypairs
        ),
        empty="no keypairs",
    )


@keypair.command("rm")
@click.argument("access_key")
def delete_keypair(access_key: str) -> None:
    """Delete a keypair.

    Requests signed with it are refused from then on.
    """

    async def work(session: AsyncSession) -> None:
        await session.admin.keypairs.delete(access_key)

    run_session(work)
    click.echo(f"deleted keypair {access_key}")


@admin.group(cls=ClientGroup)
def token() -> None:
    """API tokens: Bearer credentials for the gateway.

    Each token acts as a keypair, for MCP clients and tools that cannot sign requests
    (`Authorization: Bearer TOKEN`).
    """


@token.command("create")
@click.argument("access_key", required=False)
@click.option("--name", default=None, help="A name to recognize the token by.")
@click.option(
    "--expires-in", type=DURATION, default=None, help="Valid for this long (e.g. 30d, 12h)."
)
@click.option("--token-only", is_flag=True, help="Print the token alone (for `export X=$(...)`).")
@json_option
def create_token(
    access_key: str | None,
    name: str | None,
    expires_in: str | None,
    token_only: bool,
    as_json: bool,
) -> None:
    """Create an API token and print it, once.

    The token acts as ACCESS_KEY (default: the access key this client signs with) at the
    gateway; only its hash is kept, so it cannot be shown again.
    """

    async def work(session: AsyncSession) -> ApiTokenCreated:
        owner = access_key or session.config.access_key
        if owner is None:
            raise click.UsageError("no ACCESS_KEY given and none configured for this client")
        return await session.admin.tokens.create(owner, name=name, expires_in=expires_in)

    created = run_session(work)
    if as_json:
        print_json(created)
        return
    if token_only:
        click.echo(created.token)
        return
    click.echo(f"id:    {created.id}")
    click.echo(f"token: {created.token}")
    click.echo("the token is shown only now: keep it somewhere safe", err=True)


@token.command("ls")
@json_option
def list_tokens(as_json: bool) -> None:
    """List API tokens (never the tokens themselves)."""

    async def work(session: AsyncSession) -> list[ApiTokenInfo]:
        return list(await session.admin.tokens.list())

    tokens = run_session(work)
    if as_json:
        print_json(tokens)
        return
    print_table(
        ["ID", "ACCESS KEY", "NAME", "CREATED", "EXPIRES"],
        (
            [
                t.id,
                t.access_key,
                t.name,
                t.created_at,
                t.expires_at.isoformat() if t.expires_at else "never",
            ]
            for t in tokens
        ),
        empty="no API tokens",
    )


@token.command("rm")
@click.argument("token_id", metavar="ID")
def delete_token(token_id: str) -> None:
    """Delete an API token.

    The gateway refuses it from then on (after its credential cache time, a few seconds).
    """

    async def work(session: AsyncSession) -> None:
        await session.admin.tokens.delete(token_id)

    run_session(work)
    click.echo(f"deleted API token {token_id}")
