from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ai.backend.common.config.sections import LogFormat, LogLevel
from ai.backend.common.log import BraceStyleAdapter, setup_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class Unprintable:
    def __str__(self) -> str:
        raise AssertionError("formatted although the level is disabled")


def test_text_format_uses_brace_placeholders(restore_root_logger: None) -> None:
    stream = io.StringIO()
    setup_logging(level=LogLevel.INFO, log_format=LogFormat.TEXT, stream=stream)
    log = BraceStyleAdapter(logging.getLogger("test.brace"))
    log.info("placed {} on {agent}", "r-1", agent="agent-a")
    log.debug("hidden {}", Unprintable())
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("INFO    test.brace: placed r-1 on agent-a")


def test_json_format_carries_extras_and_exceptions(restore_root_logger: None) -> None:
    stream = io.StringIO()
    setup_logging(level="debug", log_format="json", stream=stream)
    log = BraceStyleAdapter(logging.getLogger("test.json"), {"service": "manager"})
    log.debug("tick {}", 3, extra={"replica": "r-9"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed {}", "step")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "service", "replica")} == {
        "level": "DEBUG",
        "logger": "test.json",
        "message": "tick 3",
        "service": "manager",
        "replica": "r-9",
    }
    assert first["at"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert second["message"] == "failed step"
    assert second["exc"].splitlines()[-1] == "ValueError: boom"


def test_literal_braces_without_arguments_are_kept(restore_root_logger: None) -> None:
    stream = io.StringIO()
    setup_logging(level=LogLevel.INFO, log_format=LogFormat.TEXT, stream=stream)
    BraceStyleAdapter(logging.getLogger("test.literal")).warning("payload {not formatted}")
    assert stream.getvalue().rstrip().endswith("test.literal: payload {not formatted}")


def test_setup_logging_replaces_earlier_handlers(restore_root_logger: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging(stream=first)
    setup_logging(stream=second)
    BraceStyleAdapter(logging.getLogger("test.replace")).info("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1
