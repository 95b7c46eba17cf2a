"""Text that PostgreSQL can store: no NUL characters, no lone surrogates (JSONB and TEXT refuse
both). Request bodies are refused with a message; machine reports (heartbeats, job events) are
scrubbed instead, so that one odd string cannot stop them."""

from __future__ import annotations

from typing import Any

from .errors import InvalidInput


def text_problem(text: str) -> str | None:
    """Why a decoded string cannot be stored (PostgreSQL takes neither), else ``None``."""
    if "\x00" in text:
        return "NUL characters (\\u0000) are not allowed"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "invalid unicode (a lone surrogate) is not allowed"
    return None


def _scrubbed(text: str) -> str:
    return text.replace("\x00", "").encode(errors="replace").decode()


def clean_strings(value: Any, *, scrub: bool) -> Any:
    """``value`` with every string (keys too) storable: with ``scrub``, NULs dropped and lone
    surrogates replaced; without, :class:`InvalidInput` for the first bad one. Iterative, so
    deeply nested bodies cannot exhaust the stack."""
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                if not scrub:
                    raise InvalidInput(f"body: {problem}")
                container[key] = _scrubbed(item)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
        elif isinstance(item, dict):
            for name in list(item):
                if isinstance(name, str) and text_problem(name) is not None:
                    if not scrub:
                        raise InvalidInput(f"body: {text_problem(name)}")
                    item[_scrubbed(name)] = item.pop(name)
            stack.extend((item, name) for name in item)
    return root[0]
