"""HMAC authentication of every non-public route (errors and bodies: ``ai.backend.common.web``)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ai.backend.common.web import Handler, check_path_parameters, signed_parts

from .context import KEYPAIR_KEY, context

PUBLIC_PATHS = frozenset({"/health", "/metrics", "/openapi.json"})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    check_path_parameters(request)
    body = await request.read()
    parts = signed_parts(request, body)
    request[KEYPAIR_KEY] = await context(request).auth.authenticate(
        authorization=request.headers.get("Authorization"), parts=parts, now=datetime.now(UTC)
    )
    return await handler(request)
