"""Authentication of every non-public route: the caller goes in ``request[CALLER_KEY]``
(errors and bodies: ``ai.backend.common.web``)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ai.backend.common.web import Handler, check_path_parameters, signed_parts

from .context import CALLER_KEY, context

PUBLIC_PATHS = frozenset(
    {"/health", "/metrics", "/openapi.json", "/v2/health/live", "/v2/health/ready"}
)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    check_path_parameters(request)
    auth = context(request).auth
    authorization = request.headers.get("Authorization")
    # HMAC signs the body; a Bearer request's body stays unread for the handler to stream
    body = await request.read() if auth.needs_body(authorization) else b""
    parts = signed_parts(request, body)
    request[CALLER_KEY] = await auth.authenticate(
        authorization=authorization, parts=parts, now=datetime.now(UTC)
    )
    return await handler(request)
