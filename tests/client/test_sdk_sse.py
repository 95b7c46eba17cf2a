"""The SSE parser: messages end at a blank line; comments, unknown fields and a message cut off
before its blank line yield nothing."""

from __future__ import annotations

from ai.backend.client.sse import SseMessage, SseParser


def feed_all(lines: list[str]) -> list[SseMessage]:
    parser = SseParser()
    return [m for line in lines if (m := parser.feed(line)) is not None]


def test_frames_of_the_gateway_become_messages() -> None:
    lines = [
        ": heartbeat\n",
        "\n",
        "id: 1\n",
        "event: running\n",
        'data: {"kind":"running"}\n',
        "\n",
        "id: 2\r\n",
        "event: partial\r\n",
        "data: first line\r\n",
        "data:second line\r\n",
        "retry: 3000\r\n",
        "\r\n",
    ]
    assert feed_all(lines) == [
        SseMessage("1", "running", '{"kind":"running"}'),
        SseMessage("2", "partial", "first line\nsecond line"),
    ]


def test_a_message_without_event_is_a_message_and_keeps_the_last_id() -> None:
    assert feed_all(["id: 7", "data: a", "", "data: b", ""]) == [
        SseMessage("7", "message", "a"),
        SseMessage("7", "message", "b"),
    ]


def test_a_cut_off_message_is_never_dispatched() -> None:
    assert feed_all(["id: 1", "event: running", "data: {}", "", "id: 2", "event: part"]) == [
        SseMessage("1", "running", "{}")
    ]
