"""Logging: ``BraceStyleAdapter`` loggers and text / JSON output.

    log = BraceStyleAdapter(logging.getLogger(__spec__.name))
    log.info("placed {} on {}", replica_id, agent_id)

Formatting happens only when a record is emitted, so disabled levels cost one check. Payloads
are never logged above DEBUG (a house rule the adapter cannot enforce; reviewers do).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from .config.sections import LogFormat, LogLevel

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class BraceMessage:
    """A message formatted with ``str.format`` when (and only when) a handler renders it."""

    __slots__ = ("fmt", "args", "kwargs")

    def __init__(self, fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        self.fmt = fmt
        self.args = args
        self.kwargs = kwargs

    def __str__(self) -> str:
        if not self.args and not self.kwargs:
            return self.fmt
        return self.fmt.format(*self.args, **self.kwargs)


class BraceStyleAdapter(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter taking ``{}`` placeholders instead of ``%s``.

    Keyword arguments other than ``exc_info``, ``stack_info``, ``stacklevel`` and ``extra`` fill
    named placeholders.
    """

    _PASSTHROUGH = ("exc_info", "stack_info", "stacklevel", "extra")

    def __init__(self, logger: logging.Logger, extra: Mapping[str, object] | None = None) -> None:
        super().__init__(logger, extra or {})

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        log_kwargs = {k: kwargs.pop(k) for k in self._PASSTHROUGH if k in kwargs}
        log_kwargs.setdefault("stacklevel", 1)
        log_kwargs["stacklevel"] += 2  # report the caller, not the adapter
        message = BraceMessage(str(msg), args, kwargs)
        msg_out, out_kwargs = self.process(message, log_kwargs)
        self.logger.log(level, msg_out, **out_kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        if self.extra:
            kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return msg, kwargs

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **kwargs)

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.CRITICAL, msg, *args, **kwargs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``at``, ``level``, ``logger``, ``message``, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(
    *,
    level: LogLevel | str = LogLevel.INFO,
    log_format: LogFormat | str = LogFormat.TEXT,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install one handler on the root logger (replacing earlier ones) and return it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if LogFormat(log_format) is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LogLevel(str(level).upper()).value)
    return handler
