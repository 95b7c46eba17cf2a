"""What every aiohttp service of the platform shares: errors as JSON with the right status, and
request bodies read into storable JSON (400 naming the problem, 413 past the body limit)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from .errors import BackendError, InvalidInput, PayloadTooLarge
from .json import JSONDecodeError, dumps, loads
from .log import BraceStyleAdapter

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


def text_problem(text: str) -> str | None:
    """Why a decoded string cannot be stored (PostgreSQL takes neither), else ``None``."""
    if "\x00" in text:
        return "NUL characters (\\u0000) are not allowed"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "invalid unicode (a lone surrogate) is not allowed"
    return None


def _scrubbed(text: str) -> str:
    return text.replace("\x00", "").encode(errors="replace").decode()


def clean_strings(value: Any, *, scrub: bool) -> Any:
    """``value`` with every string (keys too) storable: with ``scrub``, NULs dropped and lone
    surrogates replaced; without, :class:`InvalidInput` for the first bad one. Iterative, so
    deeply nested bodies cannot exhaust the stack."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                if not scrub:
                    raise InvalidInput(f"body: {problem}")
                container[key] = _scrubbed(item)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
        elif isinstance(item, dict):
            for name in list(item):
                if isinstance(name, str) and text_problem(name) is not None:
                    if not scrub:
                        raise InvalidInput(f"body: {text_problem(name)}")
                    item[_scrubbed(name)] = item.pop(name)
            stack.extend((item, name) for name in item)
    return root[0]


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
