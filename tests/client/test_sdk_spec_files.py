"""Actor spec files: relative paths are anchored at the file's folder (DESIGN.md §6a)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai.backend.client.exceptions import BackendClientError
from ai.backend.client.spec_files import read_spec_file, spec_body
from ai.backend.common.dto.actor_spec import ActorSpec


def test_relative_paths_are_resolved_against_the_spec_folder(tmp_path: Path) -> None:
    folder = tmp_path / "project" / "specs"
    folder.mkdir(parents=True)
    (folder / "echo.yaml").write_text(
        "name: echo\n"
        "handler: app:echo\n"
        "pythonpath: [.., ../lib, /opt/shared]\n"
        "python: ../.venv/bin/python\n"
    )
    assert read_spec_file(folder / "echo.yaml") == {
        "name": "echo",
        "handler": "app:echo",
        "pythonpath": [
            str(tmp_path / "project"),
            str(tmp_path / "project" / "lib"),
            "/opt/shared",
        ],
        "python": str(tmp_path / "project" / ".venv" / "bin" / "python"),
    }


def test_json_files_and_bare_interpreters(tmp_path: Path) -> None:
    (tmp_path / "echo.json").write_text(
        '{"name": "echo", "handler": "app:echo", "python": "python3"}'
    )
    assert spec_body(str(tmp_path / "echo.json")) == {
        "name": "echo",
        "handler": "app:echo",
        "python": "python3",
    }


def test_mappings_and_models_are_sent_as_given() -> None:
    assert spec_body({"name": "echo", "pythonpath": ["lib"]}) == {
        "name": "echo",
        "pythonpath": ["lib"],
    }
    body = spec_body(ActorSpec(name="echo", handler="app:echo"))
    assert (body["name"], body["handler"], body["timeout"]) == ("echo", "app:echo", "1m")


def test_unreadable_files_are_client_errors(tmp_path: Path) -> None:
    with pytest.raises(BackendClientError) as missing:
        read_spec_file(tmp_path / "nope.yaml")
    assert str(missing.value) == (
        f"cannot read the actor spec {tmp_path / 'nope.yaml'}: No such file or directory"
    )
    (tmp_path / "list.yaml").write_text("- name: echo\n")
    with pytest.raises(BackendClientError) as not_a_mapping:
        read_spec_file(tmp_path / "list.yaml")
    assert str(not_a_mapping.value) == (
        f"{tmp_path / 'list.yaml'}: an actor spec must be a mapping (name: …, handler: …)"
    )
