"""The agent's API errors, each with one HTTP status and error code."""

from __future__ import annotations

from ai.backend.common.errors import AuthenticationFailed, NotFound


class ReplicaNotFound(NotFound):
    code = "replica_not_found"


class InvalidSignature(AuthenticationFailed):
    code = "invalid_signature"
