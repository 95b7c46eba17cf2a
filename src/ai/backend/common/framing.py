"""Length-prefixed JSON frames of the sidecar ↔ runtime protocol (DESIGN.md §4.3).

Frame = 4-byte big-endian unsigned length + UTF-8 JSON. A frame whose announced length exceeds
``max_frame`` is rejected *before its body is read*: :func:`read_frame` raises
:class:`FrameTooLarge` and leaves the body on the stream, which the caller may skip with
:func:`discard_frame_body` (in bounded chunks, never allocating the whole body) to keep serving.

This module depends only on the standard library (orjson is used when installed) so that the
runtime can load it inside any model image.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from typing import Any

try:  # optional speed-up; the runtime may run where orjson is not installed
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - exercised in images without orjson

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

    def _loads(data: bytes) -> Any:
        return json.loads(data)


HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
MAX_ENCODABLE_FRAME = 2**32 - 1
_DISCARD_CHUNK = 64 * 1024
_ID_PATTERN = re.compile(rb'"id"\s*:\s*"([^"\\]{1,128})"')


class FrameError(Exception):
    """Base of framing errors; ``code`` is the protocol's error code."""

    code = "frame_error"


class FrameTooLarge(FrameError):
    code = "frame_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class InvalidFrame(FrameError):
    """The body is not UTF-8 JSON, or not a JSON object."""

    code = "invalid_json"


class IncompleteFrame(FrameError):
    """The peer closed the connection in the middle of a frame."""

    code = "connection_error"


def encode_frame(message: Any, *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Header + JSON body; raises :class:`FrameTooLarge` instead of sending an oversized frame."""
    body = _dumps(message)
    limit = min(max_frame, MAX_ENCODABLE_FRAME)
    if len(body) > limit:
        raise FrameTooLarge(len(body), limit)
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = _loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidFrame(f"frame body is not valid JSON: {e}") from None
    if not isinstance(message, dict):
        raise InvalidFrame(f"frame body must be a JSON object, got {type(message).__name__}")
    return message


def peek_frame_id(body: bytes) -> str | None:
    """The ``"id"`` of a frame body that is not valid JSON, when it can still be seen, so that
    the error can be attributed to its call."""
    match = _ID_PATTERN.search(body)
    return match.group(1).decode(errors="replace") if match else None


async def read_frame_bytes(
    reader: asyncio.StreamReader, *, max_frame: int = DEFAULT_MAX_FRAME
) -> bytes | None:
    """The next frame's body, or ``None`` at a clean end of stream (between frames).

    Raises :class:`FrameTooLarge` (body left unread), or :class:`IncompleteFrame` when the stream
    ends inside a frame.
    """
    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise IncompleteFrame("connection closed inside a frame header") from None
    (size,) = HEADER.unpack(header)
    if size > max_frame:
        raise FrameTooLarge(size, max_frame)
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as e:
        raise IncompleteFrame(
            f"connection closed after {len(e.partial)} of {size} body bytes"
        ) from None


async def read_frame(
    reader: asyncio.StreamReader, *, max_frame: int = DEFAULT_MAX_FRAME
) -> dict[str, Any] | None:
    """The next frame as a JSON object, or ``None`` at a clean end of stream.

    Raises :class:`FrameTooLarge`, :class:`InvalidFrame` (the stream stays in sync: the whole
    body was consumed) or :class:`IncompleteFrame`.
    """
    body = await read_frame_bytes(reader, max_frame=max_frame)
    if body is None:
        return None
    return decode_body(body)


async def discard_frame_body(reader: asyncio.StreamReader, size: int) -> None:
    """Skip ``size`` body bytes in bounded chunks (after :class:`FrameTooLarge`)."""
    remaining = size
    while remaining:
        chunk = await reader.read(min(remaining, _DISCARD_CHUNK))
        if not chunk:
            raise IncompleteFrame(f"connection closed with {remaining} bytes left to discard")
        remaining -= len(chunk)


async def write_frame(
    writer: asyncio.StreamWriter, message: Any, *, max_frame: int = DEFAULT_MAX_FRAME
) -> None:
    """Encode and send one frame, waiting for the transport's buffer to drain."""
    writer.write(encode_frame(message, max_frame=max_frame))
    await writer.drain()


class CoalescingWriter:
    """Frames written in the same event-loop turn leave in one ``write`` (one syscall), which
    matters when many calls are in flight on one connection. Call from the loop's thread."""

    __slots__ = ("writer", "_chunks", "_scheduled")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._chunks: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._chunks.append(data)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._chunks:
            return
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        if not self.writer.is_closing():
            self.writer.write(data)

    def backed_up(self, limit: int = 4 * 1024 * 1024) -> bool:
        """More than ``limit`` bytes wait to be sent: the caller should :meth:`drain`."""
        return self.writer.transport.get_write_buffer_size() > limit

    async def drain(self) -> None:
        """Send what is queued and wait until the socket takes it."""
        self.flush()
        await self.writer.drain()

    async def drain_if_backed_up(self, limit: int = 4 * 1024 * 1024) -> None:
        """Wait for the socket when more than ``limit`` bytes are waiting to be sent."""
        if self.backed_up(limit):
            await self.drain()
