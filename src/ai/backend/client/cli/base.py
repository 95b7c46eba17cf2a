"""What every user command shares: exit codes, the ``--debug`` option, one-line errors, and
running a command's body in an :class:`~ai.backend.client.AsyncSession`.

Exit codes (also in ``backend.ai <group> --help``):

- 0: done;
- 1: the job failed or was cancelled, or the server refused the request (its message is shown);
- 2: a usage error (click's: unknown option, bad value);
- 3: the server cannot be reached (nothing answers at the configured endpoint).

An error is one line on stderr, ``error: …``; ``--debug`` (on any group or command, or
``BACKEND_DEBUG=1``) adds the traceback above it.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ai.backend.common.cli.debug import DEBUG_META_KEY

if TYPE_CHECKING:
    from ai.backend.client import AsyncSession

T = TypeVar("T")


EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 the job failed or was cancelled, or the server refused the request;"
    " 2 usage error; 3 the server cannot be reached."
)


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CommandFailed(Exception):
    """Raised by a command to end with ``error: <message>`` and ``exit_code``."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _remember_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[DEBUG_META_KEY] = True


def debug_option() -> click.Option:
    return click.Option(
        ["--debug"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        envvar="BACKEND_DEBUG",
        callback=_remember_debug,
        help="On an error, show the traceback too (also BACKEND_DEBUG=1).",
    )


def _has_debug_option(command: click.Command) -> bool:
    return any(isinstance(p, click.Option) and "--debug" in p.opts for p in command.params)


def _error_line(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def _describe(error: BaseException) -> tuple[str, ExitCode]:
    """The one line a user sees for ``error``, and the exit code it means."""
    from ai.backend.client.exceptions import BackendAPIError, BackendClientError, ServerUnreachable

    if isinstance(error, CommandFailed):
        return error.message, error.exit_code
    if isinstance(error, ServerUnreachable):
        return (
            f"cannot reach {error.url} ({error.reason}); is the platform running?"
            " (start it with `backend.ai dev up`, or set BACKEND_ENDPOINT /"
            " BACKEND_GATEWAY_ENDPOINT)",
            ExitCode.UNREACHABLE,
        )
    if isinstance(error, BackendAPIError):
        code = f", {error.code}" if error.code else ""
        return f"{error.message} (HTTP {error.status}{code})", ExitCode.FAILED
    if isinstance(error, BackendClientError):
        return str(error) or type(error).__name__, ExitCode.FAILED
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", ExitCode.INTERRUPTED
    return f"{type(error).__name__}: {error} (run with --debug for details)", ExitCode.FAILED


class ClientGroup(click.Group):
    """A command group of the user CLI: every command in it accepts ``--debug``, and any error
    a command raises ends as one ``error: …`` line and a meaningful exit code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not _has_debug_option(self):
            self.params.append(debug_option())

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not _has_debug_option(cmd):
            cmd.params.append(debug_option())
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise  # usage errors (exit 2) and deliberate exits: click reports them
        except (Exception, KeyboardInterrupt) as error:
            if ctx.meta.get(DEBUG_META_KEY):
                traceback.print_exception(error, file=sys.stderr)
            message, code = _describe(error)
            _error_line(message)
            raise click.exceptions.Exit(int(code)) from None


def client_group(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """``@click.group`` with :class:`ClientGroup` and ``-h`` for help."""
    kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
    return click.group(name, cls=ClientGroup, **kwargs)


def fail(message: str, exit_code: ExitCode = ExitCode.FAILED) -> NoReturn:
    raise CommandFailed(message, exit_code)


def run_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work(session)`` in a fresh event loop with an
    :class:`~ai.backend.client.AsyncSession` configured from the environment and
    ``client.toml`` (``ClientConfig.load()``)."""
    from ai.backend.client import AsyncSession  # imported when a command runs: fast --help

    async def main() -> T:
        async with AsyncSession() as session:
            return await work(session)

    return asyncio.run(main())
