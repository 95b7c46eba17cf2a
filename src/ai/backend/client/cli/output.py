"""Rendering for the user CLI: JSON exactly as the API returns it (``--json``), rich tables
for people, and the small formats (ages, slots, JSON snippets) the tables share."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import click
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

F = TypeVar("F", bound=Callable[..., Any])

EMPTY = "-"


def json_option(function: F) -> F:
    """``--json``: print exactly the API's JSON (``model_dump(mode="json")``), for scripts."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the result as JSON (the API's own shape), for scripts.",
    )(function)


def jsonable(value: Any) -> Any:
    """A DTO, a list of DTOs, or plain data, as JSON-ready data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(jsonable(value), indent=2, ensure_ascii=False))


def print_json_line(value: Any) -> None:
    """One compact JSON document per line (streams: logs, events)."""
    click.echo(json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":")))


def compact_json(value: Any, *, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr); when piped, wide enough never to fold a cell."""
    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        out.width = 1000
    return out


def table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> Table:
    """A table whose cells are plain text (never rich markup: names may hold brackets)."""
    grid = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for index, column in enumerate(columns):
        grid.add_column(column, overflow="fold", no_wrap=index == 0)  # ids and names stay whole
    for row in rows:
        grid.add_row(*(cell if isinstance(cell, Text) else Text(_cell(cell)) for cell in row))
    return grid


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    empty: str | None = None,
) -> None:
    materialized = list(rows)
    if not materialized and empty is not None:
        click.echo(empty)
        return
    console().print(table(columns, materialized, title=title))


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """``key: value`` lines, keys aligned."""
    width = max((len(key) for key, _ in fields), default=0)
    for key, value in fields:
        click.echo(f"{key + ':':<{width + 1}} {_cell(value)}")


def _cell(value: Any) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, datetime):
        return age(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    return compact_json(jsonable(value))


def age(moment: datetime, *, now: datetime | None = None) -> str:
    """How long ago: ``"4s ago"``, ``"3m ago"``, ``"2h ago"``, ``"5d ago"``."""
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def slots_text(slots: Mapping[str, Any]) -> str:
    """``cpu=1 mem=512m cuda.shares=0.5`` (zero slots left out)."""
    from ai.backend.common.types.units import format_size

    parts = []
    for name in sorted(slots):
        amount = slots[name]
        if Decimal(str(amount)) == 0:
            continue
        shown = format_size(int(amount)) if name == "mem" else _number(amount)
        parts.append(f"{name}={shown}")
    return " ".join(parts) or EMPTY


def usage_text(used: Mapping[str, Any], total: Mapping[str, Any], name: str) -> str:
    """``used/total`` of one slot (``2/8``, ``1g/16g``), or ``-`` when the agent has none."""
    from ai.backend.common.types.units import format_size

    have, of = Decimal(str(used.get(name) or 0)), Decimal(str(total.get(name) or 0))
    if of == 0:
        return EMPTY
    if name == "mem":
        return f"{format_size(int(have))}/{format_size(int(of))}"
    return f"{_number(have)}/{_number(of)}"


def _number(amount: Any) -> str:
    text = str(amount)
    return text.rstrip("0").rstrip(".") if "." in text else text
