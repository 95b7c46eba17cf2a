"""What users type into the CLI (``--arg``, ``--input``, replica counts) and how a followed
job's events turn into progress and lines: pure functions, no server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ai.backend.client.cli.job_watch import HopProgress, error_text, event_line, partial_text
from ai.backend.client.cli.output import age, slots_text, usage_text
from ai.backend.client.cli.params import (
    json_or_text,
    parse_assignment,
    parse_json_object,
    parse_replicas,
    parse_tensor,
)
from ai.backend.common.dto.gateway_api import StoredJobEvent
from ai.backend.common.dto.job_event import JobError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("-2.5", -2.5),
        ("true", True),
        ("null", None),
        ('{"a": [1, 2]}', {"a": [1, 2]}),
        ('"10"', "10"),
        ("hello world", "hello world"),
        ("", ""),
        ("NaN", "NaN"),  # not JSON: kept as text, never a float nan
        ("[1,", "[1,"),
    ],
)
def test_a_value_is_json_when_it_parses_else_text(text: str, value: Any) -> None:
    assert json_or_text(text) == value
    assert type(json_or_text(text)) is type(value)


def test_an_assignment_splits_at_the_first_equals_sign() -> None:
    assert parse_assignment("value=10") == ("value", 10)
    assert parse_assignment("query=a=b") == ("query", "a=b")
    assert parse_assignment(" text =hi") == ("text", "hi")
    with pytest.raises(ValueError, match="expected KEY=VALUE, got 'value'"):
        parse_assignment("value")
    with pytest.raises(ValueError, match="expected KEY=VALUE, got '=1'"):
        parse_assignment("=1")


def test_json_args_must_be_an_object() -> None:
    assert parse_json_object('{"value": 1}') == {"value": 1}
    with pytest.raises(ValueError, match=r"expected a JSON object \(\{...\}\), got list"):
        parse_json_object("[1]")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json_object("{value: 1}")


def test_replicas_are_a_count_or_auto() -> None:
    assert [parse_replicas(t) for t in ("0", "3", "auto", "AUTO")] == [0, 3, "auto", "auto"]
    with pytest.raises(ValueError, match="expected a number of replicas or 'auto', got 'many'"):
        parse_replicas("many")
    with pytest.raises(ValueError, match="must not be negative, got -1"):
        parse_replicas("-1")


def test_a_tensor_is_name_datatype_shape_and_json_data() -> None:
    assert parse_tensor("INPUT0:fp32:3:[1,2,3]") == {
        "name": "INPUT0",
        "datatype": "FP32",
        "shape": [3],
        "data": [1, 2, 3],
    }
    assert parse_tensor("x:INT64:[2,2]:[[1,2],[3,4]]")["data"] == [1, 2, 3, 4]
    assert parse_tensor('s:BYTES:1:["a:b"]')["data"] == ["a:b"]  # colons inside the data
    assert parse_tensor("n:FP64::7") == {"name": "n", "datatype": "FP64", "shape": [], "data": [7]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("INPUT0:FP32:[1,2]", "expected NAME:DATATYPE:SHAPE:DATA, got 'INPUT0:FP32:[1,2]'"),
        ("x:FLOAT:1:[1]", "datatype: expected one of BOOL, UINT8,"),
        ("x:FP32:a:[1]", "shape: expected numbers like 3 or 2,3, got 'a'"),
        ("x:FP32:2:[1,2,3]", "data of 'x': shape [2] holds 2 element(s), got 3"),
        ("x:FP32:1:[1", "data of 'x': not valid JSON"),
        (":FP32:1:[1]", "the tensor needs a name"),
    ],
)
def test_a_bad_tensor_is_named_in_the_error(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_tensor(text)
    assert str(caught.value).startswith(message)


def _event(seq: int, kind: str, **data: Any) -> StoredJobEvent:
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    return StoredJobEvent(job_id="j1", seq=seq, kind=kind, data={"kind": kind, **data}, at=at)


def test_progress_moves_through_the_hops_and_never_back() -> None:
    progress = HopProgress(hops=2)
    seen = []
    for event in [
        _event(1, "running", actor="doubler", step=1, total=2),
        _event(2, "progress", actor="doubler", step=1, total=2, data={"progress": 1, "total": 4}),
        _event(3, "progress", actor="doubler", step=1, total=2, data={"message": "warming"}),
        _event(4, "partial", actor="doubler", step=1, total=2, data={"token": "a"}),
        _event(5, "running", actor="incrementer", step=2, total=2),
        _event(6, "partial", actor="incrementer", step=2, total=2, data={"token": "b"}),
        _event(7, "partial", actor="incrementer", step=2, total=2, data={"token": "c"}),
        _event(8, "succeeded", result={"value": 25}),
    ]:
        progress.feed(event)
        seen.append((round(progress.completed, 4), progress.label))
    assert seen == [
        (0.0, "doubler (1/2)"),
        (0.25, "doubler (1/2)"),
        (0.25, "doubler (1/2): warming"),
        (0.625, "doubler (1/2)"),  # a partial: half of the rest of the hop
        (1.0, "incrementer (2/2)"),
        (1.5, "incrementer (2/2)"),
        (1.6667, "incrementer (2/2)"),  # the next partial: a third of the rest
        (2.0, "succeeded"),
    ]


def test_event_lines_and_error_texts() -> None:
    assert partial_text({"token": "word"}) == "word"
    assert partial_text({"a": 1, "b": "x"}) == '{"a": 1, "b": "x"}'
    assert partial_text("text") == "text"
    lines = [
        event_line(_event(1, "running", actor="doubler", step=1, total=2)),
        event_line(
            _event(
                2,
                "progress",
                actor="doubler",
                step=1,
                total=2,
                data={"progress": 1, "total": 3, "message": "step 1"},
            )
        ),
        event_line(_event(3, "partial", actor="doubler", step=1, total=2, data={"token": "hi"})),
        event_line(_event(4, "succeeded", result={"value": 25})),
        event_line(
            _event(
                5,
                "failed",
                actor="boom",
                error={
                    "code": "processing_error",
                    "type": "ValueError",
                    "message": "bad",
                    "actor": "boom",
                },
            )
        ),
        event_line(_event(6, "cancelled", data={"reason": "cancelled by the caller"})),
    ]
    at = "2026-01-02T03:04:05.678+00:00"
    assert lines == [
        f"#1  {at}  running  doubler 1/2",
        f"#2  {at}  progress  doubler 1/2  1/3 step 1",
        f"#3  {at}  partial  doubler 1/2  hi",
        f'#4  {at}  succeeded  {{"value": 25}}',
        f"#5  {at}  failed  boom  boom: ValueError: bad (processing_error)",
        f"#6  {at}  cancelled  cancelled by the caller",
    ]
    error = JobError(code="timeout", message="took longer than 1s")
    assert error_text(error) == "took longer than 1s (timeout)"
    assert error_text({"code": "cancelled", "message": "cancelled by the caller"}) == (
        "cancelled by the caller (cancelled)"
    )


def test_table_formats() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    ages = [
        age(now.replace(hour=h, minute=m, second=s), now=now)
        for h, m, s in [(12, 0, 0), (11, 59, 30), (11, 57, 0), (9, 0, 0)]
    ]
    assert ages == ["0s ago", "30s ago", "3m ago", "3h ago"]
    assert slots_text(
        {"cpu": "1", "mem": str(512 * 2**20), "cuda.shares": "0.50", "cuda.device": "0"}
    ) == ("cpu=1 cuda.shares=0.5 mem=512m")
    assert usage_text({"cpu": "2"}, {"cpu": "8", "mem": str(2**34)}, "cpu") == "2/8"
    assert usage_text({}, {"cpu": "8", "mem": str(2**34)}, "mem") == "0/16g"
    assert usage_text({}, {"cpu": "8"}, "cuda.device") == "-"
