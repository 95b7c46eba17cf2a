"""``/v1/admin/keypairs`` and ``/v1/admin/tokens``: admins create, list and delete keypairs and
the gateway's API tokens."""

from __future__ import annotations

from aiohttp import web

from ai.backend.common.web import json_response, read_body

from ..services.auth import require_admin
from .context import caller, context, list_response


async def create_keypair(request: web.Request) -> web.Response:
    require_admin(caller(request))
    created = await context(request).keypairs.create(await read_body(request))
    return json_response(created.model_dump(mode="json"), status=201)


async def list_keypairs(request: web.Request) -> web.Response:
    require_admin(caller(request))
    return list_response(await context(request).keypairs.list_all())


async def delete_keypair(request: web.Request) -> web.Response:
    require_admin(caller(request))
    await context(request).keypairs.delete(request.match_info["access_key"])
    return web.Response(status=204)


async def create_token(request: web.Request) -> web.Response:
    require_admin(caller(request))
    created = await context(request).tokens.create(await read_body(request))
    return json_response(created.model_dump(mode="json"), status=201)


async def list_tokens(request: web.Request) -> web.Response:
    require_admin(caller(request))
    return list_response(await context(request).tokens.list_all())


async def delete_token(request: web.Request) -> web.Response:
    require_admin(caller(request))
    await context(request).tokens.delete(request.match_info["token_id"])
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/admin/keypairs", create_keypair)
    app.router.add_get("/v1/admin/keypairs", list_keypairs)
    app.router.add_delete("/v1/admin/keypairs/{access_key}", delete_keypair)
    app.router.add_post("/v1/admin/tokens", create_token)
    app.router.add_get("/v1/admin/tokens", list_tokens)
    app.router.add_delete("/v1/admin/tokens/{token_id}", delete_token)
