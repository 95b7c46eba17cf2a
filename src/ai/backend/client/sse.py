"""Server-sent events, read line by line as the WHATWG spec says: ``field: value`` lines
(one optional space after the colon), ``:`` comments (the gateway's heartbeats), a blank line
ends a message; ``data`` lines of one message are joined with ``\\n``. A message cut off before
its blank line is never dispatched, so a dropped connection cannot yield half an event."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SseMessage:
    id: str | None
    event: str
    data: str


class SseParser:
    """Feed it the lines of a stream (with or without their line ending); it returns a message
    when a blank line completes one."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._has_fields = False

    def feed(self, raw_line: str) -> SseMessage | None:
        line = raw_line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id = value
        else:
            return None  # "retry" and unknown fields: nothing the SDK needs
        self._has_fields = True
        return None

    def _dispatch(self) -> SseMessage | None:
        if not self._has_fields:
            return None
        message = SseMessage(self._id, self._event or "message", "\n".join(self._data))
        self._event, self._data, self._has_fields = "", [], False
        return message
