"""Base classes and shared field types for the wire DTOs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

HAPPY_END = "happy-end"
ERROR_END = "error-end"
RESERVED_ACTOR_NAMES = frozenset({HAPPY_END, ERROR_END})

_ACTOR_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_HANDLER_REF = re.compile(
    r"^[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*$"
)


class StrictModel(BaseModel):
    """A DTO that rejects unknown keys and is immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def check_actor_name(value: str) -> str:
    """``value`` if it is a valid actor name (crew names included), else ``ValueError``."""
    if not _ACTOR_NAME.match(value):
        raise ValueError(
            f"invalid actor name {value!r}: use 1-63 lowercase letters, digits and '-',"
            " starting and ending with a letter or digit"
        )
    return value


SYSTEM_CONTEXT = {"system": True}
"""Validation context under which the crew's names are accepted where a user's actor name is
expected: the manager's own system actors and the desired replicas it sends to agents."""


def _check_user_actor_name(value: str, info: ValidationInfo) -> str:
    check_actor_name(value)
    context = info.context if isinstance(info.context, dict) else {}
    if value in RESERVED_ACTOR_NAMES and not context.get("system"):
        raise ValueError(f"actor name {value!r} is reserved for the platform's crew actors")
    return value


def _check_handler_ref(value: str) -> str:
    if not _HANDLER_REF.match(value):
        raise ValueError(f"invalid handler {value!r}: expected 'package.module:attribute'")
    return value


ActorName = Annotated[str, AfterValidator(check_actor_name)]
"""Any actor name that may appear in a route, including the crew (``happy-end``, ``error-end``)."""

UserActorName = Annotated[str, AfterValidator(_check_user_actor_name)]
"""An actor name a user may deploy or write in a route: the crew's names are reserved."""

HandlerRef = Annotated[str, AfterValidator(_check_handler_ref)]
"""``package.module:attribute`` of a user handler."""


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("resources", "cuda.device")`` → ``resources.cuda.device``; list indexes as ``[0]``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(root)"


def describe_validation_error(error: ValidationError) -> list[dict[str, Any]]:
    """Per-field problems for API responses: ``[{"field": "retry.base", "message": "…"}]``."""
    problems = []
    for item in error.errors(include_url=False):
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        problems.append({"field": field_path(tuple(item["loc"])), "message": message})
    return problems


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_request(
    model: type[ModelT],
    data: Any,
    *,
    error: Callable[[str], Exception],
    context: dict[str, Any] | None = None,
) -> ModelT:
    """``data`` as ``model``, or ``error(<one line naming every bad field>)`` raised: how an API
    turns a request body into a DTO (the error class carries the 4xx)."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        raise error(summarize_validation_error(e)) from None


def summarize_validation_error(error: ValidationError) -> str:
    """One line naming every bad field: ``retry.base: invalid duration 'x' …; name: …``."""
    return "; ".join(f"{p['field']}: {p['message']}" for p in describe_validation_error(error))
