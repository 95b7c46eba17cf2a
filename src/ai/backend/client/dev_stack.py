"""``AsyncSession.start()``: bring the local dev stack up when nothing answers at the configured
manager endpoint (like ``ray.init()``), by running ``python -m ai.backend.cli dev up`` as a
subprocess, then read the client configuration it wrote.

The SDK never imports the dev stack's code (``ai.backend.cli``): it runs it as a user would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shlex
import sys
from collections import deque
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from ai.backend.common.log import BraceStyleAdapter

from .config import DEFAULT_ENDPOINT, DEFAULT_GATEWAY_ENDPOINT, ClientConfig
from .exceptions import DevStackError, ServerUnreachable

log = BraceStyleAdapter(logging.getLogger(__spec__.name))

DEV_UP_TIMEOUT: Final = 600.0  # a fresh machine unpacks PostgreSQL and migrates the schema
PROBE_TIMEOUT: Final = 5.0
OUTPUT_TAIL_LINES: Final = 40


def default_dev_up_command() -> list[str]:
    return [sys.executable, "-m", "ai.backend.cli", "dev", "up"]


def is_local(url: str) -> bool:
    """Whether ``url`` names this machine: a loopback address (``127.0.0.0/8``, ``::1``) or
    ``localhost``; any other name (``127.example.com`` too) may be another machine."""
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def dev_up_arguments(
    config: ClientConfig, *, agents: int | None, mock_gpus: int | None
) -> list[str]:
    """The options of ``dev up``: the sizes asked for, and the ports of the configured
    endpoints when they are not the defaults (so the stack comes up where the client looks)."""
    arguments: list[str] = []
    if agents is not None:
        arguments += ["--agents", str(agents)]
    if mock_gpus is not None:
        arguments += ["--mock-gpus", str(mock_gpus)]
    for option, url, default in (
        ("--manager-port", config.endpoint, DEFAULT_ENDPOINT),
        ("--gateway-port", config.gateway_endpoint, DEFAULT_GATEWAY_ENDPOINT),
    ):
        port = urlsplit(url).port
        if port is not None and port != urlsplit(default).port:
            arguments += [option, str(port)]
    return arguments


async def manager_answers(endpoint: str, *, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether anything answers HTTP at the manager's endpoint (any status counts: a server
    that refuses us is still there)."""
    try:
        async with aiohttp.ClientSession() as http, http.get(
            f"{endpoint}/health", timeout=aiohttp.ClientTimeout(total=timeout)
        ):
            return True
    except (aiohttp.ClientError, TimeoutError):
        return False


async def run_dev_up(command: Sequence[str], *, timeout: float, echo: bool) -> str:
    """Run ``command`` to its end; its output (stdout and stderr), each line also logged and,
    with ``echo``, written to stderr as it comes. :class:`DevStackError` with the output's
    tail when it fails, cannot start, or runs past ``timeout`` seconds."""
    shown = shlex.join(command)
    log.info("starting the dev stack: {}", shown)
    try:
        child = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as e:
        raise DevStackError(f"cannot run `{shown}`: {e.strerror or e}") from None
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)

    async def read_output() -> None:
        assert child.stdout is not None
        async for raw in child.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            log.info("dev up: {}", line)
            if echo:
                print(line, file=sys.stderr, flush=True)

    try:
        async with asyncio.timeout(timeout):
            await read_output()
            returncode = await child.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        raise DevStackError(
            f"`{shown}` did not finish within {timeout:g} s", "\n".join(tail)
        ) from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        raise
    if returncode != 0:
        raise DevStackError(f"`{shown}` failed (exit status {returncode})", "\n".join(tail))
    return "\n".join(tail)


async def ensure_dev_stack(
    config: ClientConfig,
    *,
    agents: int | None = None,
    mock_gpus: int | None = None,
    command: Sequence[str] | None = None,
    timeout: float = DEV_UP_TIMEOUT,
    echo: bool = True,
) -> ClientConfig:
    """``config`` when its manager answers; else the configuration ``dev up`` wrote after
    bringing the stack up on this machine. ``command`` replaces ``python -m ai.backend.cli dev
    up`` (the options are appended to it)."""
    if await manager_answers(config.endpoint):
        return config
    if not is_local(config.endpoint):
        raise ServerUnreachable(
            config.endpoint, "nothing answers (a dev stack is only started on this machine)"
        )
    base = list(command) if command is not None else default_dev_up_command()
    output = await run_dev_up(
        base + dev_up_arguments(config, agents=agents, mock_gpus=mock_gpus),
        timeout=timeout,
        echo=echo,
    )
    started = ClientConfig.load()
    if not await manager_answers(started.endpoint):
        raise DevStackError(
            f"`dev up` finished, but nothing answers at {started.endpoint}"
            f" (client configuration: {started.source_file or 'none found'})",
            output,
        )
    return started
