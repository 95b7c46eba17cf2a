"""``/v1/models``: the KServe model registry."""

from __future__ import annotations

from aiohttp import web

from ai.backend.common.web import json_response

from ..services.auth import require_registry_reader
from .context import caller, context, list_response


async def list_models(request: web.Request) -> web.Response:
    require_registry_reader(caller(request))
    return list_response(await context(request).models.list_all())


async def get_model(request: web.Request) -> web.Response:
    require_registry_reader(caller(request))
    versions = await context(request).models.versions(request.match_info["name"])
    return json_response(
        {"name": versions[0].name, "versions": [m.model_dump(mode="json") for m in versions]}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{name}", get_model)
