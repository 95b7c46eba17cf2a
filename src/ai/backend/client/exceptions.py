"""What the SDK raises. Every error is a :class:`BackendClientError`; a server's refusal is a
:class:`BackendAPIError` carrying its HTTP status and its ``{"error", "code"}`` body, and a
server that does not answer at all is :class:`ServerUnreachable` (the CLI exits 3 on it)."""

from __future__ import annotations

from typing import Any


class BackendClientError(Exception):
    """Base of every error of the client SDK; the message is meant for the user."""


class BackendAPIError(BackendClientError):
    """The server answered with an error status. ``code`` is the machine-readable code of the
    body (``not_found``, ``conflict``, …; ``None`` when the body has none), ``message`` its
    ``error`` text, ``body`` the parsed body (or its text when it is not JSON)."""

    def __init__(self, status: int, code: str | None, message: str, body: Any = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.code is None:
            return f"{self.status}: {self.message}"
        return f"{self.status} {self.code}: {self.message}"


class ServerUnreachable(BackendClientError):
    """Nothing answered at ``url``: connection refused, unknown host, or no answer in time."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"cannot reach {self.url}: {self.reason}"


class ClientConfigError(BackendClientError):
    """The client configuration (``client.toml`` or the environment) holds an invalid value."""


class DevStackError(BackendClientError):
    """``dev up`` (run by ``AsyncSession.start()``) failed; ``output`` holds the tail of what it
    printed."""

    def __init__(self, message: str, output: str = "") -> None:
        self.output = output
        super().__init__(f"{message}\n{output}" if output else message)
