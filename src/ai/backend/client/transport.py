"""Signed HTTP requests to one service of the platform (the manager or the gateway).

Every request is signed with the client's keypair (HMAC, DESIGN.md §6; the gateway accepts the
same signature in its default ``token`` auth mode). An error answer becomes
:class:`BackendAPIError` with the body's ``{"error", "code"}``; a server that does not answer
becomes :class:`ServerUnreachable`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
from pydantic import BaseModel, TypeAdapter, ValidationError

# yarl comes with aiohttp (not a requirement of its own, so Pants cannot infer it)
from yarl import URL  # pants: no-infer-dep

from ai.backend.common.auth.hmac_signing import EndpointSigner
from ai.backend.common.dto.base import summarize_validation_error
from ai.backend.common.json import JSONDecodeError, dumps, loads
from ai.backend.common.log import BraceStyleAdapter

from .exceptions import BackendAPIError, BackendClientError, ServerUnreachable

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

JSON_TYPE: Final = "application/json"
CONNECT_TIMEOUT: Final = 10.0
ERROR_TEXT_LIMIT: Final = 500

ModelT = TypeVar("ModelT", bound=BaseModel)
QueryValue = str | int | float | None


def path_segment(value: str) -> str:
    """``value`` as one segment of a URL path (``/`` and every other reserved character
    escaped)."""
    return quote(value, safe="")


def with_query(path: str, query: Mapping[str, QueryValue] | None) -> str:
    """``path?a=1&b=x``, leaving out parameters that are ``None``."""
    pairs = [(key, str(value)) for key, value in (query or {}).items() if value is not None]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def unreachable(url: str, error: BaseException, timeout: float | None = None) -> ServerUnreachable:
    """What went wrong when ``url`` gave no answer, in words a user understands."""
    reason: str
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        reason = f"cannot resolve host {error.host}"
    elif isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, ConnectionRefusedError):
            reason = "connection refused"
        else:
            reason = error.os_error.strerror or str(error.os_error) or type(error).__name__
    elif isinstance(error, TimeoutError):
        reason = f"no answer within {timeout:g} s" if timeout else "no answer in time"
    elif isinstance(error, aiohttp.ServerDisconnectedError):
        reason = "the server closed the connection"
    else:
        reason = str(error) or type(error).__name__
    return ServerUnreachable(url, reason)


def api_error(status: int, raw: bytes, reason: str | None) -> BackendAPIError:
    """The error a 4xx/5xx answer stands for: the ``{"error", "code"}`` body when there is
    one, else the body's text (or the HTTP reason phrase)."""
    try:
        body: Any = loads(raw) if raw.strip() else None
    except JSONDecodeError:
        body = raw.decode(errors="replace")
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body.get("code")
        return BackendAPIError(status, code if isinstance(code, str) else None, body["error"], body)
    text = body.strip()[:ERROR_TEXT_LIMIT] if isinstance(body, str) else ""
    return BackendAPIError(status, None, text or reason or f"HTTP {status}", body)


class ServiceEndpoint:
    """One service at a base URL (``http://127.0.0.1:8081``), signing with one keypair.

    ``http`` returns the shared ``aiohttp.ClientSession`` (created lazily by the session, in
    the event loop that uses it).
    """

    def __init__(
        self,
        *,
        service: str,
        url: str,
        access_key: str | None,
        secret_key: str | None,
        http: Callable[[], aiohttp.ClientSession],
        timeout: float,
    ) -> None:
        self.service = service
        self._signer = EndpointSigner(url, access_key, secret_key)
        self.url = self._signer.api
        self._http = http
        self.timeout = timeout

    def _signed(
        self, method: str, path_with_query: str, body: bytes, extra: Mapping[str, str] | None
    ) -> tuple[URL, dict[str, str]]:
        headers = self._signer.headers(method, path_with_query, body, JSON_TYPE)
        # signed as sent: yarl must not re-encode the path or the query
        return URL(self._signer.url(path_with_query), encoded=True), {**headers, **(extra or {})}

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """Send one request; the status and the parsed JSON body (``None`` when empty).
        Raises :class:`BackendAPIError` for a 4xx/5xx answer."""
        path_with_query = with_query(path, query)
        data = b"" if body is None else dumps(body)
        url, headers = self._signed(method, path_with_query, data, None)
        limit = timeout if timeout is not None else self.timeout
        try:
            async with self._http().request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=limit, connect=CONNECT_TIMEOUT),
            ) as response:
                raw = await response.read()
                status, reason = response.status, response.reason
        except (aiohttp.ClientConnectionError, TimeoutError) as e:
            raise unreachable(self.url, e, limit) from None
        except aiohttp.ClientError as e:
            raise BackendClientError(f"{method} {self.url}{path}: {e}") from None
        if status >= 400:
            raise api_error(status, raw, reason)
        if not raw.strip():
            return status, None
        try:
            return status, loads(raw)
        except JSONDecodeError:
            raise BackendClientError(
                f"the {self.service} at {self.url} answered {method} {path} with a body that is"
                f" not JSON: {raw[:ERROR_TEXT_LIMIT].decode(errors='replace')!r}"
            ) from None

    async def get(self, path: str, **options: Any) -> Any:
        return (await self.call("GET", path, **options))[1]

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A ``GET`` whose body is read as it arrives (SSE, NDJSON): no total timeout, and
        ``read_timeout`` seconds at most between two reads. A 4xx/5xx answer raises
        :class:`BackendAPIError` before the body is handed over; errors while reading it are
        left to the caller (it may reconnect)."""
        path_with_query = with_query(path, query)
        url, signed = self._signed("GET", path_with_query, b"", headers)
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=read_timeout)
        try:
            response = await self._http().get(url, headers=signed, timeout=timeout)
        except (aiohttp.ClientConnectionError, TimeoutError) as e:
            raise unreachable(self.url, e, CONNECT_TIMEOUT) from None
        try:
            if response.status >= 400:
                try:
                    raw = await response.read()
                except (aiohttp.ClientError, TimeoutError) as e:
                    raise unreachable(self.url, e, read_timeout) from None
                raise api_error(response.status, raw, response.reason)
            yield response
        finally:
            response.release()


def parse_as(model: type[ModelT], body: Any, *, what: str) -> ModelT:
    """``body`` as ``model``; a body that does not fit is the server's fault, reported as
    :class:`BackendClientError` naming ``what`` was expected."""
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise BackendClientError(
            f"unexpected {what} from the server: {summarize_validation_error(e)}"
        ) from None


def parse_items(model: type[ModelT], body: Any, *, what: str) -> list[ModelT]:
    """The ``items`` of a list answer (``{"items": [...], "next_cursor": …}``) as ``model``."""
    items = body.get("items") if isinstance(body, dict) else None
    try:
        return TypeAdapter(list[model]).validate_python(items)  # type: ignore[valid-type]
    except ValidationError as e:
        raise BackendClientError(
            f"unexpected {what} from the server: {summarize_validation_error(e)}"
        ) from None


async def iter_lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The lines of a streamed body, without their ``\\n``, whatever their length (aiohttp's
    own line reader refuses lines above 128 KiB; a job's result can be larger). A last line
    without its ``\\n`` (the connection dropped in the middle of it) is not yielded."""
    pending = bytearray()
    async for chunk in response.content.iter_any():
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield bytes(pending[start:end])
            start = end + 1
        del pending[:start]
