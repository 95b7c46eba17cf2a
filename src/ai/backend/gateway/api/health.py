"""``/health`` (200 when PostgreSQL and Redis answer, else 503) and ``/metrics``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ai.backend.common.web import json_response

from .context import context


async def health(request: web.Request) -> web.Response:
    ctx = context(request)
    checks = await ctx.probe()
    ok = all(checks.values())
    body = {
        "status": "ok" if ok else "degraded",
        "gateway_id": ctx.gateway_id,
        "version": ctx.version,
        "applier": ctx.is_applier(),
        "checks": {name: "ok" if good else "unreachable" for name, good in checks.items()},
        "tools": len(list(ctx.tools)),
    }
    return json_response(body, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    ctx = context(request)
    await ctx.refresh_metrics()
    return web.Response(
        body=generate_latest(ctx.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
