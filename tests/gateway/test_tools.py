"""Tool files: loading, validation of arguments with defaults, and reloads that keep the
previous tools when a file is bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai.backend.gateway.errors import InvalidArgument, ToolNotFound
from ai.backend.gateway.services.tools import ToolFileError, ToolService, load_tools
from ai.backend.testutils.gateway import write_tools


def test_arguments_are_validated_with_defaults_applied(tmp_path: Path) -> None:
    tools = ToolService(write_tools(tmp_path / "tools.yaml"))
    assert [t.name for t in tools] == ["double", "double_then_increment"]
    assert tools.validate_arguments("double", {}) == {"value": 21}
    assert tools.validate_arguments("double_then_increment", {"value": 3}) == {"value": 3}
    with pytest.raises(InvalidArgument, match=r"^arguments\.value: 'x' is not of type 'integer'$"):
        tools.validate_arguments("double_then_increment", {"value": "x"})
    with pytest.raises(InvalidArgument, match=r"^arguments: 'value' is a required property$"):
        tools.validate_arguments("double_then_increment", {})
    with pytest.raises(InvalidArgument, match="Additional properties are not allowed"):
        tools.validate_arguments("double", {"value": 1, "extra": 2})
    with pytest.raises(InvalidArgument, match=r"^arguments: expected an object$"):
        tools.validate_arguments("double", [1])
    with pytest.raises(ToolNotFound, match=r"^unknown tool 'nope'$"):
        tools.validate_arguments("nope", {})


def test_a_directory_of_tool_files(tmp_path: Path) -> None:
    write_tools(tmp_path / "a.yaml", [{"name": "a", "description": "A", "route": ["x"]}])
    write_tools(tmp_path / "b.yml", [{"name": "b", "description": "B", "route": ["y", "z"]}])
    (tmp_path / "notes.txt").write_text("not a tool file")
    assert sorted(load_tools(tmp_path)) == ["a", "b"]
    write_tools(tmp_path / "c.yaml", [{"name": "a", "description": "again", "route": ["x"]}])
    with pytest.raises(ToolFileError, match=r"c\.yaml: tool 'a' is defined twice"):
        load_tools(tmp_path)


def test_a_bad_reload_keeps_the_previous_tools(tmp_path: Path) -> None:
    path = write_tools(tmp_path / "tools.yaml")
    tools = ToolService(path)
    path.write_text("tools:\n  - name: broken\n    route: []\n")
    assert tools.reload() is False
    assert [t.name for t in tools] == ["double", "double_then_increment"]
    write_tools(path, [{"name": "only", "description": "the only tool", "route": ["x"]}])
    assert tools.reload() is True
    assert [t.name for t in tools] == ["only"]
    assert tools.generation == 2


def test_a_missing_tool_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ToolFileError, match="no such tool file or directory"):
        ToolService(tmp_path / "missing.yaml")
