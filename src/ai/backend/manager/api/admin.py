"""``/v1/admin/keypairs``: admins create, list and delete keypairs."""

from __future__ import annotations

from aiohttp import web

from ..services.auth import require_admin
from .context import caller, context, json_response, list_response
from .middlewares import read_body


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


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/admin/keypairs", create_keypair)
    app.router.add_get("/v1/admin/keypairs", list_keypairs)
    app.router.add_delete("/v1/admin/keypairs/{access_key}", delete_keypair)
