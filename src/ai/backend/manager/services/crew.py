"""The crew (``happy-end``, ``error-end``): system actors the manager creates at start, placed
and supervised like any actor (DESIGN.md §6a). Their replicas are sidecars alone."""

from __future__ import annotations

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.base import ERROR_END, HAPPY_END, SYSTEM_CONTEXT


def crew_specs() -> list[ActorSpec]:
    return [
        ActorSpec.model_validate(
            {
                "name": name,
                # the sidecar runs the crew itself; the handler names its implementation
                "handler": "ai.backend.sidecar.services.crew:CrewMember",
                "execution": "inprocess",
                "resources": {"cpu": "0.1", "mem": "128m"},
                "concurrency": 64,
                "scaling": {"min_replicas": 1, "max_replicas": 1},
            },
            context=SYSTEM_CONTEXT,
        )
        for name in (HAPPY_END, ERROR_END)
    ]
