"""Fan-out and fan-in. ``splitter`` returns a list: each item becomes a message of its own (a
branch), sent on to the next actor of the route, ``squarer``, whose replicas work on the
branches in parallel. When every branch has ended, the job succeeds once with the branches'
results in branch order (the fan-in)::

    ./backend.ai actor apply -f examples/fan_out/splitter.yaml
    ./backend.ai actor apply -f examples/fan_out/squarer.yaml
    ./backend.ai job run square_all --arg 'values=[1, 2, 3]' --follow
    # {"results": [{"value": 1}, {"value": 4}, {"value": 9}]}

Returning ``[]`` (or ``None``) ends the route at once: the job's result is the payload as it came.
A failed branch fails the job with the first error. ``splitter`` also shows the optional second
parameter, ``ctx``: it reports progress (an event of the job, a progress notification in MCP).
"""

from __future__ import annotations

from typing import Any

from ai.backend.runtime import Context


def split(payload: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    values = list(payload["values"])
    ctx.progress(1, total=1, message=f"split into {len(values)} branches")
    return [{"value": value} for value in values]


def square(payload: dict[str, Any]) -> dict[str, Any]:
    return {"value": payload["value"] ** 2}
