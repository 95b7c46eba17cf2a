"""``backend.ai tool …``: the tools the gateway offers (MCP, REST, ``job run``)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ai.backend.common.types.units import format_duration

from .base import EXIT_CODES_HELP, client_group, run_session
from .output import json_option, print_json, print_table

if TYPE_CHECKING:
    from ai.backend.client import AsyncSession
    from ai.backend.common.dto.gateway_api import ToolInfo


@client_group(epilog=EXIT_CODES_HELP)
def tool() -> None:
    """Tools: named routes of actors with an argument schema (what MCP clients and
    `backend.ai job run TOOL` call).

    \b
    backend.ai tool ls
    """


def parameters_text(schema: dict[str, Any]) -> str:
    """``value:integer*, text:string`` (``*`` marks a required argument)."""
    required = set(schema.get("required") or ())
    parts = []
    for name, field in (schema.get("properties") or {}).items():
        kind = field.get("type", "any") if isinstance(field, dict) else "any"
        kind = "|".join(kind) if isinstance(kind, list) else str(kind)
        parts.append(f"{name}:{kind}{'*' if name in required else ''}")
    return ", ".join(parts) or "-"


@tool.command("ls")
@json_option
def list_tools(as_json: bool) -> None:
    """List tools with their route and arguments.

    Arguments are NAME:TYPE, * marks a required one (`job run TOOL --arg NAME=VALUE`).
    """

    async def work(session: AsyncSession) -> list[ToolInfo]:
        return list(await session.tools.list())

    tools = run_session(work)
    if as_json:
        print_json(tools)
        return
    print_table(
        ["NAME", "ROUTE", "ARGUMENTS", "TIMEOUT", "DESCRIPTION"],
        (
            [
                t.name,
                " → ".join(t.route),
                parameters_text(t.input_schema),
                format_duration(timedelta(seconds=t.timeout_seconds)),
                t.description,
            ]
            for t in tools
        ),
        empty="the gateway has no tools (see `[tools] path` in its configuration)",
    )
