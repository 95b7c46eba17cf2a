"""The smallest actor: a plain function that answers with its payload.

Deploy it and call its tool (from the repository root, with the dev stack up)::

    ./backend.ai actor apply -f examples/echo/echo.yaml
    ./backend.ai job run echo --arg message=hello --follow   # {"message": "hello"}

A handler is any importable callable that takes the payload (the tool's arguments, a JSON
object) and returns JSON; it runs in a worker thread of the actor's runtime process.
"""

from __future__ import annotations

from typing import Any


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload
