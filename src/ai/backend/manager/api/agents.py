"""``/v1/agents``: list and get for users; the agents' own heartbeat."""

from __future__ import annotations

from aiohttp import web

from ai.backend.common.web import json_response, read_body

from ..services.auth import require_user
from .context import caller, context, list_response


async def list_agents(request: web.Request) -> web.Response:
    require_user(caller(request))
    return list_response(await context(request).agents.list_all())


async def get_agent(request: web.Request) -> web.Response:
    require_user(caller(request))
    info = await context(request).agents.get(request.match_info["agent_id"])
    return json_response(info.model_dump(mode="json"))


async def heartbeat(request: web.Request) -> web.Response:
    body = await read_body(request, scrub=True)  # one odd log line must not silence an agent
    reply = await context(request).agents.heartbeat(
        request.match_info["agent_id"], body, caller(request)
    )
    return json_response(reply.model_dump(mode="json"))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/agents", list_agents)
    app.router.add_get("/v1/agents/{agent_id}", get_agent)
    app.router.add_post("/v1/agents/{agent_id}/heartbeat", heartbeat)
