"""``App``: a registry of KServe-style model handlers inside one runtime.

    app = App()

    @app.model("resnet", version="1")
    def infer(request: InferRequest) -> InferResponse: ...

Run with ``--handler my.module:app``. A call names its model (``"model"`` / ``"version"`` in the
call frame); with a single model registered it may leave them out. When a model handler's first
parameter is annotated with a dataclass, the payload (a JSON object) is turned into that
dataclass, and a dataclass result is turned back into a JSON object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    handler: Callable[..., Any]
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """What the ``hello`` frame says about the model."""
        return {
            "name": self.name,
            "version": self.version,
            "inputs": self.inputs,
            "outputs": self.outputs,
        }


class App:
    def __init__(self) -> None:
        self._models: dict[tuple[str, str], ModelInfo] = {}

    def model(
        self,
        name: str,
        *,
        version: str = "1",
        inputs: list[dict[str, Any]] | None = None,
        outputs: list[dict[str, Any]] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as ``name`` / ``version``; ``inputs`` and ``outputs``
        are KServe tensor metadata (``{"name", "datatype", "shape"}``) shown by the registry."""

        def register(handler: F) -> F:
            key = (name, version)
            if key in self._models:
                raise ValueError(f"model {name} version {version} is registered twice")
            self._models[key] = ModelInfo(name, version, handler, inputs or [], outputs or [])
            return handler

        return register

    @property
    def models(self) -> list[ModelInfo]:
        return list(self._models.values())

    def resolve(self, name: str | None, version: str | None) -> ModelInfo:
        """The model a call asks for; ``LookupError`` with a message naming what exists."""
        if name is None:
            if len(self._models) == 1:
                return next(iter(self._models.values()))
            raise LookupError(
                f"the call names no model and this app serves {len(self._models)}: "
                + ", ".join(sorted(f"{n}:{v}" for n, v in self._models))
            )
        candidates = [m for (n, _v), m in self._models.items() if n == name]
        if version is not None:
            candidates = [m for m in candidates if m.version == version]
        if not candidates:
            wanted = name if version is None else f"{name}:{version}"
            raise LookupError(f"no model {wanted} in this app")
        return max(candidates, key=lambda m: _version_key(m.version))


def _version_key(version: str) -> tuple[tuple[int, ...], str]:
    """Numeric versions order numerically ("10" > "9"); others after no number, by text."""
    try:
        return tuple(int(part) for part in version.split(".")), ""
    except ValueError:
        return (), version
