from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from ai.backend.common.dto.base import summarize_validation_error
from ai.backend.common.dto.tool_spec import ToolCatalog, ToolSpec

DESIGN_EXAMPLE = """
tools:
  - name: double_then_increment
    description: Doubles a number, then adds five.
    parameters:
      value: {type: integer, description: the input}
    required: [value]
    route: [doubler, incrementer]
    progress: true
    timeout: 300s
    wait: 30s
"""


def test_the_design_example_parses_into_an_input_schema() -> None:
    catalog = ToolCatalog.from_yaml(DESIGN_EXAMPLE)
    (tool,) = catalog.tools
    assert tool.route == ["doubler", "incrementer"]
    assert tool.wait == timedelta(seconds=30)
    assert tool.input_schema() == {
        "type": "object",
        "properties": {"value": {"type": "integer", "description": "the input"}},
        "required": ["value"],
        "additionalProperties": False,
    }


def _tool(**change: object) -> dict[str, object]:
    return {"name": "t", "description": "d", "route": ["echo"], **change}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "has space"}, "name: invalid tool name 'has space'"),
        ({"route": []}, "route: List should have at least 1 item"),
        ({"route": ["error-end"]}, "route[0]: actor name 'error-end' is reserved"),
        ({"required": ["missing"]}, "required names undefined parameters: missing"),
        ({"parameters": {"v": {"type": "integr"}}}, "not a valid JSON Schema"),
        ({"wait": "later"}, "wait: invalid duration 'later'"),
        ({"description": ""}, "description: String should have at least 1 character"),
        ({"inputs": {}}, "inputs: unknown key"),
    ],
)
def test_invalid_tools_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ToolSpec.model_validate(_tool(**change))
    assert message in summarize_validation_error(info.value)


def test_tool_names_are_unique_in_a_catalog() -> None:
    with pytest.raises(ValidationError, match="duplicate tool name 't'"):
        ToolCatalog.model_validate({"tools": [_tool(), _tool()]})


def test_an_empty_file_is_an_empty_catalog() -> None:
    assert ToolCatalog.from_yaml("").tools == []
