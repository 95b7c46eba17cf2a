"""Which PostgreSQL and Redis the stack uses this time (DESIGN.md §2 "Embedded defaults").

- A URL given explicitly (option or environment) is used when it answers, else an embedded
  instance is started.
- With no URL given, a stack that ran on an embedded instance before keeps it (its data is
  there); otherwise the default URL is used when it answers, else an embedded instance.
- While services of the stack run, it stays on what they use: a different URL asked for
  explicitly is an error (``dev down`` first).
"""

from __future__ import annotations

from collections.abc import Callable

from .embedded import (
    EMBEDDED_STOP_GRACE,
    postgres_answers,
    redis_answers,
    start_embedded_postgres,
    start_embedded_redis,
)
from .errors import DevStackError
from .paths import DevPaths
from .processes import is_running, stop_processes
from .record import DataServiceRecord
from .settings import UrlChoice


def check_unchanged(name: str, choice: UrlChoice, recorded: DataServiceRecord | None) -> None:
    """While services run: an explicitly different URL is refused."""
    if recorded is not None and choice.explicit and choice.url != recorded.url:
        raise DevStackError(
            f"the running dev stack uses {name} at {recorded.url}, not {choice.url}:"
            " run `./backend.ai dev down` first to switch"
        )


async def _retire(recorded: DataServiceRecord | None, chosen: DataServiceRecord) -> None:
    """Stop a recorded embedded instance the stack no longer uses."""
    if recorded is None or not recorded.embedded or recorded.process is None:
        return
    if chosen.embedded and chosen.data_dir == recorded.data_dir:
        return
    await stop_processes([recorded.process], grace=EMBEDDED_STOP_GRACE)


async def choose_postgres(
    choice: UrlChoice, recorded: DataServiceRecord | None, paths: DevPaths
) -> DataServiceRecord:
    keep_embedded = recorded is not None and recorded.embedded and not choice.explicit
    if not keep_embedded and await postgres_answers(choice.url):
        chosen = DataServiceRecord(name="postgres", url=choice.url, embedded=False)
    else:  # started, or found running, by embedded-postgres
        chosen = await start_embedded_postgres(paths.postgres_dir)
    await _retire(recorded, chosen)
    return chosen


async def choose_redis(
    choice: UrlChoice,
    recorded: DataServiceRecord | None,
    paths: DevPaths,
    *,
    timeout: float,
    on_started: Callable[[DataServiceRecord], None] = lambda record: None,
) -> DataServiceRecord:
    """``on_started``: called with an embedded server's record as soon as it runs."""
    keep_embedded = recorded is not None and recorded.embedded and not choice.explicit
    if keep_embedded:
        assert recorded is not None
        if is_running(recorded.process):
            if await redis_answers(recorded.url):
                return recorded
            raise DevStackError(
                f"the embedded Redis (redis, pid {recorded.process and recorded.process.pid})"
                f" runs but does not answer at {recorded.url}",
                log=recorded.log,
            )
    elif await redis_answers(choice.url):
        chosen = DataServiceRecord(name="redis", url=choice.url, embedded=False)
        await _retire(recorded, chosen)
        return chosen
    chosen = await start_embedded_redis(
        paths.redis_dir,
        paths.redis_socket,
        paths.log_file("redis"),
        timeout=timeout,
        on_started=on_started,
    )
    await _retire(recorded, chosen)
    return chosen
