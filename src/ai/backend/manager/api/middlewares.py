"""Errors as JSON with the right status, and HMAC authentication of every non-public route."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import yaml
from aiohttp import web

from ai.backend.common.auth.hmac_signing import SignedParts
from ai.backend.common.errors import BackendError, InvalidInput, PayloadTooLarge
from ai.backend.common.json import JSONDecodeError, loads
from ai.backend.common.log import BraceStyleAdapter

from .context import KEYPAIR_KEY, context, json_response

log = BraceStyleAdapter(logging.getLogger(__name__))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PATHS = frozenset({"/health", "/metrics"})
BODY_LIMIT_KEY = web.AppKey("body_limit", int)

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BackendError as e:
        return json_response(e.to_json(), status=e.http_status)
    except web.HTTPRequestEntityTooLarge:
        error = PayloadTooLarge(f"body: larger than {request.app[BODY_LIMIT_KEY]} bytes")
        return json_response(error.to_json(), status=413)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, "http_error")
        message = e.reason
        if e.status == 404:
            message = f"no route {request.method} {request.path}"
        return json_response({"error": message, "code": code}, status=e.status)
    except Exception:
        log.exception("unexpected error on {} {}", request.method, request.path)
        return json_response({"error": "internal error", "code": "internal_error"}, status=500)


MAX_PATH_PARAMETER = 256


def check_path_parameters(request: web.Request) -> None:
    """Names in the URL (actor, agent, model, access key) never reach the database with a NUL
    character or at any length."""
    for key, value in request.match_info.items():
        if "\x00" in value or len(value) > MAX_PATH_PARAMETER:
            raise InvalidInput(f"{key}: not a valid name (NUL character or too long)")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    check_path_parameters(request)
    body = await request.read()
    parts = SignedParts(
        method=request.method,
        path_with_query=request.raw_path,
        date=request.headers.get("X-BackendAI-Date") or request.headers.get("Date") or "",
        host=request.host,
        content_type=request.headers.get("Content-Type", ""),
        api_version=request.headers.get("X-BackendAI-Version", ""),
        body=body,
    )
    request[KEYPAIR_KEY] = await context(request).auth.authenticate(
        authorization=request.headers.get("Authorization"), parts=parts, now=datetime.now(UTC)
    )
    return await handler(request)


async def read_body(request: web.Request, *, allow_yaml: bool = False) -> Any:
    """The request's JSON (or, where allowed, YAML) body; 400 naming the problem."""
    raw = await request.read()
    if not raw.strip():
        raise InvalidInput("body: empty; expected a JSON object")
    if b"\x00" in raw or b"\\u0000" in raw.lower():
        raise InvalidInput("body: NUL characters (\\u0000) are not allowed")
    if allow_yaml and "yaml" in request.headers.get("Content-Type", ""):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise InvalidInput(f"body: malformed YAML: {e}") from None
    try:
        return loads(raw)
    except JSONDecodeError as e:
        raise InvalidInput(f"body: malformed JSON: {e}") from None
