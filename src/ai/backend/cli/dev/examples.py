"""The example actors and tools ``dev up`` deploys, listed in ``examples/dev-stack.yaml``::

    actors: [examples/echo/echo.yaml, …]     # actor spec files
    tools: [examples/echo/tools.yaml, …]     # gateway tool files

Relative paths are resolved against the repository root (the folder holding ``examples/``).
Each spec is applied with ``PUT /v1/actors/{name}`` (its relative ``pythonpath`` resolved
against the spec's folder, as ``actor apply -f`` does); the tool files are copied into the
gateway's tools folder (``dev/tools/``, which ``dev up`` owns), which the gateway reads at start
and again on SIGHUP. A missing manifest or file, or an actor the manager refuses, is skipped
with a note; a manager that does not answer is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ai.backend.common.dto.tool_spec import ToolCatalog

from .errors import DevStackError
from .manager_api import ManagerApi, ManagerApiError, ManagerUnreachable

MANIFEST_NAME: Final = "dev-stack.yaml"
TOOL_FILE_SUFFIX: Final = ".yaml"


def repository_root() -> Path:
    """The checkout this code runs from (``src/ai/backend/cli/dev/`` is five levels down)."""
    return Path(__file__).resolve().parents[5]


def default_manifest() -> Path:
    return repository_root() / "examples" / MANIFEST_NAME


class ExamplesManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actors: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)


@dataclass
class ExamplesOutcome:
    applied: list[str] = field(default_factory=list)  # "echo (created)", "doubler (unchanged)"
    tools: list[str] = field(default_factory=list)  # tool names now in the tools folder
    notes: list[str] = field(default_factory=list)  # what was skipped, and why


def read_manifest(path: Path, outcome: ExamplesOutcome) -> ExamplesManifest | None:
    if not path.is_file():
        outcome.notes.append(f"no examples manifest at {path}: no example actors or tools")
        return None
    try:
        return ExamplesManifest.model_validate(yaml.safe_load(path.read_text()) or {})
    except (OSError, yaml.YAMLError, ValidationError) as e:
        outcome.notes.append(f"{path}: not an examples manifest ({e}); skipped")
        return None


def _resolve(entry: str) -> Path:
    path = Path(entry).expanduser()
    return path if path.is_absolute() else repository_root() / path


def actor_spec_from_file(path: Path) -> dict[str, Any]:
    """The spec of a YAML file, its relative ``pythonpath`` entries made absolute against the
    file's folder (the manager stores absolute paths)."""
    spec: Any = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError("not an actor spec (a mapping with a name)")
    folder = path.resolve().parent
    spec["pythonpath"] = [str((folder / p).resolve()) for p in spec.get("pythonpath", [])]
    return spec


async def apply_actors(
    manager: ManagerApi, manifest: ExamplesManifest, outcome: ExamplesOutcome
) -> None:
    for entry in manifest.actors:
        path = _resolve(entry)
        try:
            spec = actor_spec_from_file(path)
        except (OSError, yaml.YAMLError, ValueError) as e:
            outcome.notes.append(f"actor spec {entry}: {e}; skipped")
            continue
        try:
            result = await manager.apply_actor(spec)
        except ManagerApiError as e:
            outcome.notes.append(f"actor {spec['name']} ({entry}) not applied: {e}")
            continue
        except ManagerUnreachable as e:
            raise DevStackError(f"the example actors were not applied: {e}") from None
        state = "created" if result.created else "updated" if result.changed else "unchanged"
        outcome.applied.append(f"{result.name} ({state})")


def _tool_file_name(index: int, entry: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", entry.removesuffix(".yaml").removesuffix(".yml"))
    return f"{index:02d}-{stem.strip('-.')}{TOOL_FILE_SUFFIX}"


def install_tools(manifest: ExamplesManifest, tools_dir: Path, outcome: ExamplesOutcome) -> None:
    """Replace the tool files in ``tools_dir`` with the manifest's (each checked first: a bad
    file, or one naming a tool another file has, is skipped with a note)."""
    tools_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in tools_dir.glob("*.y*ml"):
        old.unlink()
    names: set[str] = set()
    for index, entry in enumerate(manifest.tools):
        path = _resolve(entry)
        try:
            text = path.read_text()
            catalog = ToolCatalog.from_yaml(text)
        except (OSError, ValueError, ValidationError) as e:
            outcome.notes.append(f"tool file {entry}: {str(e).splitlines()[0]}; skipped")
            continue
        defined = {tool.name for tool in catalog.tools}
        if defined & names:
            twice = ", ".join(sorted(defined & names))
            outcome.notes.append(f"tool file {entry}: {twice} already defined; skipped")
            continue
        names |= defined
        (tools_dir / _tool_file_name(index, entry)).write_text(text)
    outcome.tools = sorted(names)
