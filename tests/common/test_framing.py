from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import pytest

from ai.backend.common.framing import (
    HEADER_SIZE,
    FrameTooLarge,
    IncompleteFrame,
    InvalidFrame,
    discard_frame_body,
    encode_frame,
    read_frame,
    read_frame_bytes,
    write_frame,
)

CALL: dict[str, Any] = {
    "t": "call",
    "id": "c-1",
    "payload": {"text": "héllo ✓ 世界", "nested": [[[None]]], "n": 1.5, "ok": True},
    "headers": {"trace": "t-1"},
}


def reader_with(*chunks: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


def header(size: int) -> bytes:
    return struct.pack(">I", size)


async def test_round_trip_of_several_frames() -> None:
    second = {"t": "result", "id": "c-1", "result": list(range(5))}
    reader = reader_with(encode_frame(CALL) + encode_frame(second))
    assert await read_frame(reader) == CALL
    assert await read_frame(reader) == second
    assert await read_frame(reader) is None  # clean end between frames


async def test_frame_is_length_prefixed_utf8_json() -> None:
    frame = encode_frame({"t": "ping"})
    assert frame == b'\x00\x00\x00\x0c{"t":"ping"}'


async def test_split_reads_are_reassembled() -> None:
    frame = encode_frame(CALL)
    reader = asyncio.StreamReader()
    pending = asyncio.create_task(read_frame(reader))
    for i in range(len(frame)):  # one byte at a time, header included
        reader.feed_data(frame[i : i + 1])
        await asyncio.sleep(0)  # let the reader run between bytes
        assert not pending.done() or i == len(frame) - 1
    assert await asyncio.wait_for(pending, 5) == CALL


async def test_oversized_frame_is_rejected_before_its_body_arrives() -> None:
    # only the header of a 1 GiB frame exists: reading the body would wait forever
    reader = reader_with(header(2**30), eof=False)
    with pytest.raises(FrameTooLarge) as info:
        await asyncio.wait_for(read_frame(reader, max_frame=1024), 5)
    assert (info.value.size, info.value.limit, info.value.code) == (2**30, 1024, "frame_too_large")
    assert str(info.value) == "frame of 1073741824 bytes exceeds the limit of 1024 bytes"


async def test_discarding_an_oversized_body_keeps_the_stream_in_sync() -> None:
    big = encode_frame({"blob": "x" * 200_000})
    reader = reader_with(big + encode_frame({"t": "ping"}))
    with pytest.raises(FrameTooLarge) as info:
        await read_frame(reader, max_frame=1000)
    await discard_frame_body(reader, info.value.size)
    assert await read_frame(reader, max_frame=1000) == {"t": "ping"}


async def test_discard_of_a_truncated_body_fails() -> None:
    reader = reader_with(b"x" * 10)
    with pytest.raises(IncompleteFrame, match="5 bytes left to discard"):
        await discard_frame_body(reader, 15)


async def test_encode_refuses_an_oversized_frame() -> None:
    with pytest.raises(FrameTooLarge) as info:
        encode_frame({"blob": "x" * 100}, max_frame=50)
    assert info.value.size == len(b'{"blob":""}') + 100


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "frame body is not valid JSON"),
        (b"\xff\xfe{}", "frame body is not valid JSON"),
        (b"[1, 2]", "frame body must be a JSON object, got list"),
    ],
)
async def test_invalid_body_is_reported_and_the_stream_stays_in_sync(
    body: bytes, message: str
) -> None:
    reader = reader_with(header(len(body)) + body + encode_frame({"t": "ping"}))
    with pytest.raises(InvalidFrame, match=message) as info:
        await read_frame(reader)
    assert info.value.code == "invalid_json"
    assert await read_frame(reader) == {"t": "ping"}


async def test_connection_closed_inside_a_frame() -> None:
    with pytest.raises(IncompleteFrame, match="inside a frame header"):
        await read_frame(reader_with(b"\x00\x00"))
    with pytest.raises(IncompleteFrame, match="after 3 of 10 body bytes"):
        await read_frame_bytes(reader_with(header(10) + b"abc"))
    assert HEADER_SIZE == 4


async def test_write_and_read_over_a_unix_socket(tmp_path: Path) -> None:
    received: list[dict[str, Any] | None] = []
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (frame := await read_frame(reader)) is not None:
            received.append(frame)
            await write_frame(writer, {"t": "result", "id": frame["id"]})
        writer.close()
        done.set()

    path = tmp_path / "rt.sock"
    server = await asyncio.start_unix_server(serve, path=str(path))
    async with server:
        reader, writer = await asyncio.open_unix_connection(str(path))
        big = {"t": "call", "id": "big", "payload": "y" * (10 * 1024 * 1024)}
        for message in (CALL, big):
            await write_frame(writer, message)
            assert await read_frame(reader) == {"t": "result", "id": message["id"]}
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(done.wait(), 5)
    assert received == [CALL, big]
