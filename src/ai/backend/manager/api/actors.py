"""``/v1/actors``: apply, list, get, scale, delete (DESIGN.md §6)."""

from __future__ import annotations

from aiohttp import web

from ai.backend.common.web import json_response, read_body

from ..services.auth import require_user
from .context import caller, context, list_response


def _name(request: web.Request) -> str:
    return request.match_info["name"]


async def apply_actor(request: web.Request) -> web.Response:
    require_user(caller(request))
    body = await read_body(request, allow_yaml=True)
    result = await context(request).actors.apply(_name(request), body)
    if result.changed:
        context(request).control.wake()
    return json_response(result.model_dump(mode="json"), status=201 if result.created else 200)


async def list_actors(request: web.Request) -> web.Response:
    require_user(caller(request))
    return list_response(await context(request).actors.list_all())


async def get_actor(request: web.Request) -> web.Response:
    require_user(caller(request))
    info = await context(request).actors.get(_name(request))
    return json_response(info.model_dump(mode="json"))


async def scale_actor(request: web.Request) -> web.Response:
    require_user(caller(request))
    body = await read_body(request)
    summary = await context(request).actors.scale(_name(request), body)
    context(request).control.wake()
    return json_response(summary.model_dump(mode="json"))


async def delete_actor(request: web.Request) -> web.Response:
    require_user(caller(request))
    summary = await context(request).actors.delete(_name(request))
    context(request).control.wake()
    return json_response(summary.model_dump(mode="json"), status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/actors", list_actors)
    app.router.add_put("/v1/actors/{name}", apply_actor)
    app.router.add_get("/v1/actors/{name}", get_actor)
    app.router.add_post("/v1/actors/{name}/scale", scale_actor)
    app.router.add_delete("/v1/actors/{name}", delete_actor)
