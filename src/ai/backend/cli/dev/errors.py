"""The dev stack's errors: one line saying what failed, then the tail of the log that tells why."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any, Final

import click

LOG_TAIL_LINES: Final = 30


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as file:
            file.seek(0, 2)
            size = file.tell()
            file.seek(max(size - 64 * 1024, 0))
            text = file.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class DevStackError(click.ClickException):
    """Exit status 1 with ``error: <message>`` on stderr, followed by the tail of ``log`` (or
    by ``detail``) when given."""

    exit_code = 1

    def __init__(self, message: str, *, log: Path | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.log = log
        self.detail = detail

    def show(self, file: IO[Any] | None = None) -> None:
        sys.stdout.flush()  # what was printed before the error comes first
        click.echo(f"error: {self.message}", err=True, file=file)
        tail = log_tail(self.log) if self.log is not None else ""
        if tail:
            click.echo(f"--- last lines of {self.log} ---", err=True, file=file)
            click.echo(tail, err=True, file=file)
        if self.detail:
            click.echo(self.detail, err=True, file=file)


class ServiceFailed(DevStackError):
    """A service that exited or did not become healthy in time."""
