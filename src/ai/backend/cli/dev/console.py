"""Progress of the long steps (a spinner on a terminal, one line per finished step)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape


class StepPrinter:
    def __init__(self, console: Console) -> None:
        self.console = console

    @contextlib.contextmanager
    def step(self, doing: str, done: str | None = None) -> Iterator[None]:
        """Show ``doing…`` while the block runs, then ``done`` (default ``doing``) with the
        time it took."""
        started = time.monotonic()
        with self.console.status(escape(doing) + " ..."):
            yield
        took = time.monotonic() - started
        self.console.print(f"[green]ok[/]  {escape(done or doing)} [dim]({took:.1f} s)[/]")

    def info(self, text: str) -> None:
        self.console.print(f"[green]ok[/]  {escape(text)}")

    def note(self, text: str) -> None:
        self.console.print(f"[yellow]--[/]  {escape(text)}")
