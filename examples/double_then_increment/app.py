"""A pipeline: two actors chained by a route. ``doubler`` doubles ``value``, ``incrementer``
adds five, so ``{"value": 10}`` becomes ``{"value": 25}``::

    ./backend.ai actor apply -f examples/double_then_increment/doubler.yaml
    ./backend.ai actor apply -f examples/double_then_increment/incrementer.yaml
    ./backend.ai job run double_then_increment --arg value=10 --follow

Each actor is deployed, scaled and placed on its own; the route (``[doubler, incrementer]``,
from the tool) travels with the message: what a hop returns is the next hop's payload. Keys a
hop does not touch are carried along (``{**payload, ...}``).
"""

from __future__ import annotations

from typing import Any


def double(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "value": payload["value"] * 2}


def increment(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "value": payload["value"] + 5}
