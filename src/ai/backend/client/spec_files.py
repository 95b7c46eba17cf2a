"""Actor spec files (YAML or JSON, DESIGN.md §4.5) as the manager wants them: paths in the
file that are relative (``pythonpath`` entries, and a ``python`` interpreter given as a path)
are resolved against the file's folder, because the manager stores absolute paths and the agent
runs the replica from a folder of its own (DESIGN.md §6a)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ai.backend.common.dto.actor_spec import ActorSpec

from .exceptions import BackendClientError


def read_spec_file(path: Path) -> dict[str, Any]:
    """The spec in ``path`` with its relative paths made absolute; the manager validates the
    rest. Raises :class:`BackendClientError` when the file cannot be read or is not a mapping."""
    try:
        text = path.read_text()
    except OSError as e:
        raise BackendClientError(f"cannot read the actor spec {path}: {e.strerror or e}") from None
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BackendClientError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(spec, dict):
        raise BackendClientError(f"{path}: an actor spec must be a mapping (name: …, handler: …)")
    return resolve_relative_paths(spec, path.resolve().parent)


def resolve_relative_paths(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``spec`` with relative ``pythonpath`` entries and a relative ``python`` path (one with a
    ``/``; a bare ``python3`` is looked up on the agent's PATH) anchored at ``folder``."""
    resolved = dict(spec)
    pythonpath = spec.get("pythonpath")
    if isinstance(pythonpath, list):
        resolved["pythonpath"] = [
            _anchored(entry, folder) if isinstance(entry, str) else entry for entry in pythonpath
        ]
    python = spec.get("python")
    if isinstance(python, str) and os.sep in python:
        resolved["python"] = _anchored(python, folder)
    return resolved


def _anchored(entry: str, folder: Path) -> str:
    """An absolute path; symlinks are kept (a venv's ``bin/python`` is a link to the base
    interpreter, and following it would lose the venv)."""
    path = Path(entry).expanduser()
    return str(path if path.is_absolute() else Path(os.path.abspath(folder / path)))


def spec_body(spec: dict[str, Any] | ActorSpec | str | os.PathLike[str]) -> dict[str, Any]:
    """What ``PUT /v1/actors/{name}`` gets for each form ``actors.apply`` accepts: a mapping
    as given, a spec model as its JSON, a path as the file's resolved contents."""
    if isinstance(spec, ActorSpec):
        return spec.model_dump(mode="json")
    if isinstance(spec, dict):
        return spec
    return read_spec_file(Path(spec))


def spec_name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise BackendClientError("the actor spec has no name (name: my-actor)")
    return name
