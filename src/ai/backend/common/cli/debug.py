"""``./backend.ai --debug``: where commands find the flag (``ctx.meta``), so that the root group
sets it without importing the commands."""

from __future__ import annotations

from typing import Final

DEBUG_META_KEY: Final = "ai.backend.cli.debug"
