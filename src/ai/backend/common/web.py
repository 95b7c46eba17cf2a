"""What every aiohttp service of the platform shares: errors as JSON with the right status, and
request bodies read into storable JSON (400 naming the problem, 413 past the body limit)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from .auth.hmac_signing import SignedParts
from .errors import BackendError, InvalidInput, PayloadTooLarge
from .json import JSONDecodeError, dumps, loads
from .log import BraceStyleAdapter
from .text import clean_strings

log = BraceStyleAdapter(logging.getLogger(__name__))


def json_response(body: Any, *, status: int = 200) -> web.Response:
    """``body`` as JSON with ``Content-Type: application/json`` exactly (no charset: some
    clients compare the header as a whole)."""
    return web.Response(body=dumps(body), status=status, content_type="application/json")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
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


async def read_body(request: web.Request, *, allow_yaml: bool = False, scrub: bool = False) -> Any:
    """The request's JSON (or, where allowed, YAML) body; 400 naming the problem. Strings that
    PostgreSQL cannot store (NUL, lone surrogates) are refused, or with ``scrub`` cleaned (for
    machine reports such as heartbeats, whose text comes from logs and user code)."""
    raw = await request.read()
    if not raw.strip():
        raise InvalidInput("body: empty; expected a JSON object")
    if allow_yaml and "yaml" in request.headers.get("Content-Type", ""):
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise InvalidInput(f"body: malformed YAML: {e}") from None
    else:
        try:
            data = loads(raw)
        except JSONDecodeError as e:
            raise InvalidInput(f"body: malformed JSON: {e}") from None
    return clean_strings(data, scrub=scrub)


def signed_parts(request: web.Request, body: bytes) -> SignedParts:
    """What an HMAC signature of ``request`` covers (DESIGN.md §6)."""
    return SignedParts(
        method=request.method,
        path_with_query=request.raw_path,
        date=request.headers.get("X-BackendAI-Date") or request.headers.get("Date") or "",
        host=request.host,
        content_type=request.headers.get("Content-Type", ""),
        api_version=request.headers.get("X-BackendAI-Version", ""),
        body=body,
    )


async def serve_until_stopped(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT, then shut it down."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
