"""Actors as users manage them: apply a spec, list, get (with queue depth), scale, delete."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.base import validate_request
from ai.backend.common.dto.manager_api import ActorInfo, ActorSummary, ApplyResult, ScaleRequest
from ai.backend.common.log import BraceStyleAdapter

from ..errors import InvalidSpec
from ..repositories.actors import ActorRepository
from .crew import crew_specs

log = BraceStyleAdapter(logging.getLogger(__name__))

QueueDepth = Callable[[str], Awaitable[int | None]]


def parse_spec(data: Any, *, name: str | None = None) -> ActorSpec:
    """A spec from a request body; :class:`InvalidSpec` (400) naming each bad field."""
    if not isinstance(data, dict):
        raise InvalidSpec("(root): expected a JSON object holding an actor spec")
    if name is not None:
        if "name" in data and data["name"] != name:
            raise InvalidSpec(f"name: {data['name']!r} does not match the URL's {name!r}")
        data = {**data, "name": name}
    return validate_request(ActorSpec, data, error=InvalidSpec)


class ActorService:
    def __init__(self, actors: ActorRepository, queue_depth: QueueDepth) -> None:
        self._actors = actors
        self._queue_depth = queue_depth

    async def apply(self, name: str, body: Any) -> ApplyResult:
        spec = parse_spec(body, name=name)
        result = await self._actors.apply(spec, now=datetime.now(UTC))
        if result.changed:
            log.info("actor {} applied: generation {}", name, result.generation)
        return result

    async def ensure_crew(self) -> None:
        for spec in crew_specs():
            await self._actors.apply(spec, now=datetime.now(UTC), system=True)

    async def list_all(self) -> list[ActorSummary]:
        return await self._actors.list_all()

    async def get(self, name: str) -> ActorInfo:
        info = await self._actors.get(name)
        depth = await self._queue_depth(name)
        return info.model_copy(update={"queue_depth": depth})

    async def scale(self, name: str, body: Any) -> ActorSummary:
        request = validate_request(ScaleRequest, body, error=InvalidSpec)
        return await self._actors.scale(name, request.pinned(), now=datetime.now(UTC))

    async def delete(self, name: str) -> ActorSummary:
        return await self._actors.mark_deleting(name, now=datetime.now(UTC))
