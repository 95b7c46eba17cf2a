"""The KServe model registry as the gateway sees it (DESIGN.md §5a): read from the manager's
``GET /v1/models``, cached, refreshed every few seconds and on a miss (one refresh at a time, at
most once per ``miss_interval``, so a flood of unknown names cannot flood the manager). A model
is ready once it is registered: its actor's stream holds requests until a replica takes them."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ai.backend.common.aio import cancel_and_wait
from ai.backend.common.dto.manager_api import ModelInfo
from ai.backend.common.log import BraceStyleAdapter

from ..clients.manager import ManagerUnavailable
from ..errors import ModelNotFound

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

REFRESH_INTERVAL: Final = 5.0
MISS_INTERVAL: Final = 1.0


class ModelSource(Protocol):
    async def list_models(self) -> list[ModelInfo]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model and the actor that serves it."""

    name: str
    version: str
    actor: str
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)


def version_order(version: str) -> tuple[tuple[int, ...], str]:
    """Numeric versions order numerically ("10" > "9"); others after no number, by text (as
    the runtime's ``App`` picks its latest)."""
    try:
        return tuple(int(part) for part in version.split(".")), ""
    except ValueError:
        return (), version


def _catalog(models: list[ModelInfo]) -> dict[str, list[ModelVersion]]:
    """Versions by model name, latest first."""
    catalog: dict[str, list[ModelVersion]] = {}
    for model in models:
        metadata = model.metadata or {}
        catalog.setdefault(model.name, []).append(
            ModelVersion(
                name=model.name,
                version=model.version,
                actor=model.actor_name,
                inputs=list(metadata.get("inputs") or []),
                outputs=list(metadata.get("outputs") or []),
            )
        )
    for versions in catalog.values():
        versions.sort(key=lambda m: version_order(m.version), reverse=True)
    return catalog


class ModelRegistry:
    def __init__(
        self,
        *,
        source: ModelSource,
        refresh_interval: float = REFRESH_INTERVAL,
        miss_interval: float = MISS_INTERVAL,
    ) -> None:
        self._source = source
        self._refresh_interval = refresh_interval
        self._miss_interval = miss_interval
        self._catalog: dict[str, list[ModelVersion]] = {}
        self._loaded = False
        self._last_refresh = float("-inf")
        self._refreshing: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        """The registry has been read at least once."""
        return self._loaded

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_periodically(), name="model-registry")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._refreshing)
        await self._source.close()

    def models(self) -> list[ModelVersion]:
        """Every known version, by name, latest version first."""
        return [m for name in sorted(self._catalog) for m in self._catalog[name]]

    def versions(self, name: str) -> list[ModelVersion]:
        return list(self._catalog.get(name, ()))

    async def find(self, name: str, version: str | None = None) -> ModelVersion:
        """The version asked for (``None``: the latest); after a miss the registry is read
        again before :class:`ModelNotFound` is raised."""
        found = self._lookup(name, version)
        if found is None and time.monotonic() - self._last_refresh >= self._miss_interval:
            await self.refresh()
            found = self._lookup(name, version)
        if found is None:
            wanted = name if version is None else f"{name} version {version}"
            raise ModelNotFound(f"model {wanted} is not registered")
        return found

    def _lookup(self, name: str, version: str | None) -> ModelVersion | None:
        versions = self._catalog.get(name)
        if not versions:
            return None
        if version is None:
            return versions[0]
        return next((m for m in versions if m.version == version), None)

    async def refresh(self) -> None:
        """Read the registry (joining a read already on its way); a failure keeps the cache
        and is logged."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._read())
        await asyncio.shield(self._refreshing)

    async def _read(self) -> None:
        self._last_refresh = time.monotonic()
        try:
            models = await self._source.list_models()
        except ManagerUnavailable as e:
            log.warning("cannot read the model registry: {}", e)
            return
        self._catalog = _catalog(models)
        self._loaded = True

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval)  # a timer, not a synchronisation
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing the model registry failed")
