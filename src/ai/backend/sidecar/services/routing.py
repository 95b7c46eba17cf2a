"""Where an envelope goes next (DESIGN.md §4.1): the next actor, fan-out children, the end of
the route (``happy-end``) or the error path (``error-end``). Headers always travel along."""

from __future__ import annotations

from typing import Any

from ai.backend.common.dto.base import ERROR_END, HAPPY_END
from ai.backend.common.dto.envelope import MAX_FAN_OUT_DEPTH, MAX_ROUTE_ACTORS, child_envelope_id
from ai.backend.common.dto.envelope_wire import WireEnvelope, WireRoute


class RoutingError(ValueError):
    """The envelope's successor would break the envelope's limits (route length, fan-out
    depth): the envelope cannot go on."""


def _route_to(envelope: WireEnvelope, crew: str) -> WireRoute:
    actors = envelope.route.without_crew()
    if len(actors) + 1 > MAX_ROUTE_ACTORS:
        raise RoutingError(
            f"a route of {len(actors)} actors leaves no room for {crew} (at most"
            f" {MAX_ROUTE_ACTORS - 1} actors)"
        )
    return WireRoute([*actors, crew], len(actors))


def _next_route(envelope: WireEnvelope) -> WireRoute:
    if envelope.route.is_last:
        return _route_to(envelope, HAPPY_END)
    return envelope.route.advanced()


def _successor(envelope: WireEnvelope, **changes: Any) -> WireEnvelope:
    return envelope.replace(job_id=envelope.job_key, attempt=1, error=None, **changes)


def successors(envelope: WireEnvelope, result: Any) -> tuple[list[WireEnvelope], bool]:
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


def retry_envelope(envelope: WireEnvelope) -> WireEnvelope:
    """The same envelope at its next attempt (the same id: the job's branch stays one)."""
    return envelope.replace(attempt=envelope.attempt + 1)


def to_error_end(envelope: WireEnvelope, error: dict[str, Any]) -> WireEnvelope:
    """The envelope bound for ``error-end`` with the original payload and the last error."""
    return envelope.replace(
        job_id=envelope.job_key, route=_route_to(envelope, ERROR_END), error=error
    )
