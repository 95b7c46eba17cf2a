"""``/health`` and ``/metrics`` (public)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ai.backend.common.web import json_response

from .context import context


async def health(request: web.Request) -> web.Response:
    ctx = context(request)
    return json_response({"status": "ok", "leader": ctx.leader.is_leader, "version": ctx.version})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(context(request).registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
