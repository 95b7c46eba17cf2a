"""Actors (manager ``/v1/actors``): apply a spec, list, get, scale, delete, read logs."""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncGenerator
from typing import Any, Final, Literal

import aiohttp

from ai.backend.common.dto.actor_spec import ActorSpec
from ai.backend.common.dto.manager_api import ActorInfo, ActorSummary, ApplyResult
from ai.backend.common.json import JSONDecodeError, loads

from ..dto import LogLine
from ..exceptions import BackendClientError
from ..spec_files import spec_body, spec_name
from ..transport import (
    ServiceEndpoint,
    iter_lines,
    parse_as,
    parse_items,
    path_segment,
    unreachable,
)

# the manager sends an empty line every 15 s while a followed log is quiet
LOG_READ_TIMEOUT: Final = 60.0


class Actors:
    def __init__(self, manager: ServiceEndpoint) -> None:
        self._manager = manager

    async def apply(self, spec: dict[str, Any] | ActorSpec | str | os.PathLike[str]) -> ApplyResult:
        """Create or update an actor. ``spec`` is a mapping, an :class:`ActorSpec`, or the path
        of a YAML/JSON file (a relative ``pythonpath`` is resolved against its folder)."""
        body = spec_body(spec)
        name = spec_name(body)
        _, answer = await self._manager.call("PUT", f"/v1/actors/{path_segment(name)}", body=body)
        return parse_as(ApplyResult, answer, what="apply result")

    async def list(self) -> builtins.list[ActorSummary]:
        answer = await self._manager.get("/v1/actors")
        return parse_items(ActorSummary, answer, what="actor list")

    async def get(self, name: str) -> ActorInfo:
        answer = await self._manager.get(f"/v1/actors/{path_segment(name)}")
        return parse_as(ActorInfo, answer, what="actor")

    async def scale(self, name: str, replicas: int | Literal["auto"]) -> ActorSummary:
        """Pin the replica count (autoscaling off until the next apply), or hand the actor
        back to the autoscaler with ``"auto"``."""
        _, answer = await self._manager.call(
            "POST", f"/v1/actors/{path_segment(name)}/scale", body={"replicas": replicas}
        )
        return parse_as(ActorSummary, answer, what="actor")

    async def delete(self, name: str) -> ActorSummary:
        """Start deleting an actor (its replicas drain); the actor as it is now."""
        _, answer = await self._manager.call("DELETE", f"/v1/actors/{path_segment(name)}")
        return parse_as(ActorSummary, answer, what="actor")

    async def logs(
        self,
        name: str,
        *,
        replica: str | None = None,
        process: str | None = None,
        tail: int = 100,
        follow: bool = False,
    ) -> AsyncGenerator[LogLine, None]:
        """The last ``tail`` lines of each replica's log (``replica``: an id or its prefix;
        ``process``: ``runtime``, ``sidecar`` or ``all``), then, with ``follow``, new lines as
        they are written until the caller stops iterating. A last line the server did not
        finish (no ``\\n`` before the stream ended) is left out."""
        query: dict[str, str | int | None] = {
            "replica": replica,
            "process": process,
            "tail": tail,
            "follow": 1 if follow else 0,
        }
        async with self._manager.stream(
            f"/v1/actors/{path_segment(name)}/logs", query=query, read_timeout=LOG_READ_TIMEOUT
        ) as response:
            try:
                async for raw in iter_lines(response):
                    if not raw.strip():
                        continue  # heartbeat
                    yield _log_line(raw)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as e:
                raise unreachable(self._manager.url, e, LOG_READ_TIMEOUT) from None


def _log_line(raw: bytes) -> LogLine:
    try:
        return parse_as(LogLine, loads(raw), what="log line")
    except JSONDecodeError:
        raise BackendClientError(
            f"unexpected log line from the server: {raw[:200].decode(errors='replace')!r}"
        ) from None
