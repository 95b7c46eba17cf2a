"""The manager's domain errors, each with one HTTP status and error code."""

from __future__ import annotations

from ai.backend.common.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)


class ActorNotFound(NotFound):
    code = "actor_not_found"


class AgentNotFound(NotFound):
    code = "agent_not_found"


class ReplicaNotFound(NotFound):
    code = "replica_not_found"


class KeypairNotFound(NotFound):
    code = "keypair_not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class ApiTokenNotFound(NotFound):
    code = "token_not_found"


class ActorBeingDeleted(Conflict):
    code = "actor_deleting"


class SystemActorProtected(PermissionDenied):
    code = "system_actor"


class InvalidSpec(InvalidInput):
    code = "invalid_spec"


class InvalidSignature(AuthenticationFailed):
    code = "invalid_signature"


class AdminRequired(PermissionDenied):
    code = "admin_required"


class RoleNotAllowed(PermissionDenied):
    code = "role_not_allowed"


class AgentKeyMismatch(PermissionDenied):
    code = "agent_keypair_mismatch"
