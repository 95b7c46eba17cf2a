"""Which era a POST belongs to, and the checks that need nothing but the request's headers and
message: the modern envelope ladder (reference/protocols.md §4.6) and the ``Origin`` check.

A dual-era server decides per request. A request whose ``MCP-Protocol-Version`` header names no
handshake revision, or whose ``params._meta`` carries a protocol version, is modern (stateless);
everything else is legacy (``initialize`` opens a session, the session id travels in a header)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from .protocol import (
    HANDSHAKE_VERSIONS,
    HEADER_MISMATCH,
    INVALID_PARAMS,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
    METHOD_HEADER,
    MODERN_VERSIONS,
    NAME_BEARING_METHODS,
    NAME_HEADER,
    PROTOCOL_VERSION_HEADER,
    McpError,
    Message,
    Notification,
    Request,
    unsupported_version,
)

_BASE64_VALUE = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")
_ROUTING_HEADERS = frozenset(
    name.lower() for name in (PROTOCOL_VERSION_HEADER, METHOD_HEADER, NAME_HEADER)
)


class Era(StrEnum):
    MODERN = "modern"  # 2026-07-28: stateless
    LEGACY = "legacy"  # up to 2025-11-25: initialize, Mcp-Session-Id


def era_of(headers: Mapping[str, str], message: Message) -> Era:
    version = headers.get(PROTOCOL_VERSION_HEADER)
    if version is not None and version not in HANDSHAKE_VERSIONS:
        return Era.MODERN
    if isinstance(message, Request | Notification) and META_PROTOCOL_VERSION in message.meta:
        return Era.MODERN
    return Era.LEGACY


@dataclass(frozen=True)
class ModernEnvelope:
    """What a modern request says about its client, read from ``params._meta``."""

    protocol_version: str
    client_capabilities: Any
    client_info: Any


def decode_header_value(value: str | None) -> str | None:
    """A header value, with the ``=?base64?…?=`` form of non-ASCII values decoded; ``None``
    for a malformed one, so it never matches a body value by accident."""
    if value is None:
        return None
    match = _BASE64_VALUE.fullmatch(value)
    if match is None:
        return value
    try:
        return base64.b64decode(match.group("payload"), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _repeated_routing_header(header_lines: Iterable[tuple[str, str]]) -> str | None:
    seen: set[str] = set()
    for name, _ in header_lines:
        key = name.lower()
        if key in _ROUTING_HEADERS:
            if key in seen:
                return name
            seen.add(key)
    return None


def _mismatch(message: str) -> McpError:
    return McpError(HEADER_MISMATCH, message, http_status=400)


def check_modern_request(headers: Mapping[str, str], request: Request) -> ModernEnvelope:
    """The envelope of a modern request, or the first rung it fails: ``-32020`` for a routing
    header that disagrees with the body (or appears twice), ``-32022`` for a revision this
    server does not speak, ``-32602`` for a ``_meta`` without the required keys."""
    meta = request.params.get("_meta")
    header_version = headers.get(PROTOCOL_VERSION_HEADER)
    if not isinstance(meta, dict) or META_PROTOCOL_VERSION not in meta:
        if header_version is not None and header_version not in MODERN_VERSIONS:
            raise unsupported_version(header_version)
        raise McpError(
            INVALID_PARAMS,
            f"params._meta must carry {META_PROTOCOL_VERSION!r} and"
            f" {META_CLIENT_CAPABILITIES!r}",
            http_status=400,
        )
    repeated = _repeated_routing_header(headers.items())
    if repeated is not None:
        raise _mismatch(f"the {repeated} header appears more than once")
    version = meta[META_PROTOCOL_VERSION]
    if header_version is None or header_version != version:
        raise _mismatch(
            f"the {PROTOCOL_VERSION_HEADER} header does not match params._meta's protocol version"
        )
    if headers.get(METHOD_HEADER) != request.method:
        raise _mismatch(f"the {METHOD_HEADER} header does not match the request's method")
    name_key = NAME_BEARING_METHODS.get(request.method)
    if name_key is not None:
        name = request.params.get(name_key)
        if name is not None and decode_header_value(headers.get(NAME_HEADER)) != name:
            raise _mismatch(f"the {NAME_HEADER} header does not match params.{name_key}")
    if version not in MODERN_VERSIONS:
        raise unsupported_version(version)
    if META_CLIENT_CAPABILITIES not in meta:
        raise McpError(
            INVALID_PARAMS,
            f"params._meta is missing {META_CLIENT_CAPABILITIES!r}",
            http_status=400,
        )
    return ModernEnvelope(version, meta[META_CLIENT_CAPABILITIES], meta.get(META_CLIENT_INFO))


def _scheme_and_host(origin: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(origin.strip())
        host = parts.hostname
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    return parts.scheme.lower(), host.lower()


def origin_allowed(origin: str | None, allowed_origins: Iterable[str]) -> bool:
    """Whether a browser ``Origin`` may use the endpoint: absent (not a browser), or the same
    scheme and host as one of ``allowed_origins``, on any port. ``Origin: null`` (sandboxed
    pages, files) never is."""
    if origin is None:
        return True
    requested = _scheme_and_host(origin)
    if requested is None:
        return False
    return any(_scheme_and_host(allowed) == requested for allowed in allowed_origins)
