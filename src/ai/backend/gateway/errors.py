"""The gateway's errors, with the codes of DESIGN.md §5a (``invalid_argument``, ``not_found``,
``unauthorized``, ``forbidden``, ``conflict``)."""

from __future__ import annotations

from ai.backend.common.errors import BackendError


class InvalidArgument(BackendError):
    code = "invalid_argument"
    http_status = 400


class Unauthorized(BackendError):
    code = "unauthorized"
    http_status = 401


class Forbidden(BackendError):
    code = "forbidden"
    http_status = 403


class NotFound(BackendError):
    code = "not_found"
    http_status = 404


class ToolNotFound(NotFound):
    pass


class JobNotFound(NotFound):
    pass


class ModelNotFound(NotFound):
    pass


class Conflict(BackendError):
    code = "conflict"
    http_status = 409


class Unavailable(BackendError):
    """A backing service (Redis, PostgreSQL, the manager) does not answer."""

    code = "unavailable"
    http_status = 503


class UpstreamTimeout(BackendError):
    """A request-reply call (KServe inference) got no answer in time."""

    code = "timeout"
    http_status = 504


class InferenceFailed(BackendError):
    """The model raised, or could not be run; the message says what (without a traceback)."""

    code = "inference_failed"
    http_status = 500
