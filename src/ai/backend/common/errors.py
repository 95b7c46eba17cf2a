"""Errors with a contract: every error class has a stable code and an HTTP status.

API handlers render these with :meth:`BackendError.to_json`; they never build error JSON by hand.
"""

from __future__ import annotations

from typing import Any, ClassVar


class BackendError(Exception):
    """Base of all domain errors. Subclasses set ``code`` and ``http_status``."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(BackendError):
    code = "invalid_input"
    http_status = 400


class AuthenticationFailed(BackendError):
    code = "authentication_failed"
    http_status = 401


class PermissionDenied(BackendError):
    code = "permission_denied"
    http_status = 403


class NotFound(BackendError):
    code = "not_found"
    http_status = 404


class Conflict(BackendError):
    code = "conflict"
    http_status = 409


class PayloadTooLarge(BackendError):
    code = "payload_too_large"
    http_status = 413


class TooManyRequests(BackendError):
    code = "too_many_requests"
    http_status = 429


class ConfigurationError(BackendError):
    """A configuration file or environment variable holds an invalid value."""

    code = "configuration_error"
    http_status = 500


class ServiceUnavailable(BackendError):
    code = "service_unavailable"
    http_status = 503
