"""Where an envelope goes next (DESIGN.md §4.1): the next actor, fan-out children, the end of
the route (``happy-end``) or the error path (``error-end``). Headers always travel along."""

from __future__ import annotations

from typing import Any

from ai.backend.common.dto.base import ERROR_END, HAPPY_END
from ai.backend.common.dto.envelope import (
    MAX_FAN_OUT_DEPTH,
    MAX_ROUTE_ACTORS,
    Envelope,
    Route,
    child_envelope_id,
)


class RoutingError(ValueError):
    """The envelope's successor would break the envelope's limits (route length, fan-out
    depth): the envelope cannot go on."""


def _route_to(envelope: Envelope, crew: str) -> Route:
    actors = [a for a in envelope.route.actors if a not in (HAPPY_END, ERROR_END)]
    if len(actors) + 1 > MAX_ROUTE_ACTORS:
        raise RoutingError(
            f"a route of {len(actors)} actors leaves no room for {crew} (at most"
            f" {MAX_ROUTE_ACTORS - 1} actors)"
        )
    return Route(actors=[*actors, crew], current=len(actors))


def _next_route(envelope: Envelope) -> Route:
    if envelope.route.is_last:
        return _route_to(envelope, HAPPY_END)
    return envelope.route.advanced()


def _successor(envelope: Envelope, **changes: Any) -> Envelope:
    base = {"job_id": envelope.job_key, "attempt": 1, "error": None}
    return envelope.model_copy(update={**base, **changes})


def successors(envelope: Envelope, result: Any) -> tuple[list[Envelope], bool]:
    """The envelopes a successful call produces, and whether they are a fan-out (children with
    ids derived from the parent's and their index, so a repeated fan-out repeats them)."""
    if result is None or result == []:
        return [_successor(envelope, route=_route_to(envelope, HAPPY_END))], False
    route = _next_route(envelope)
    if isinstance(result, list):
        if len(envelope.branch) >= MAX_FAN_OUT_DEPTH:
            raise RoutingError(f"fan-outs nest at most {MAX_FAN_OUT_DEPTH} deep")
        children = [
            _successor(
                envelope,
                id=child_envelope_id(envelope.id, index),
                parent_id=envelope.id,
                route=route,
                payload=item,
                branch=[*envelope.branch, index],
            )
            for index, item in enumerate(result)
        ]
        return children, True
    return [_successor(envelope, route=route, payload=result)], False


def retry_envelope(envelope: Envelope) -> Envelope:
    """The same envelope at its next attempt (the same id: the job's branch stays one)."""
    return envelope.model_copy(update={"attempt": envelope.attempt + 1})


def to_error_end(envelope: Envelope, error: dict[str, Any]) -> Envelope:
    """The envelope bound for ``error-end`` with the original payload and the last error."""
    return envelope.model_copy(
        update={
            "job_id": envelope.job_key,
            "route": _route_to(envelope, ERROR_END),
            "error": error,
        }
    )
