"""A replica's log files as lines: the last N of each, then (when followed) what is appended.

The files are ``runtime.log`` and ``sidecar.log`` under ``{state_dir}/replicas/{replica_id}/``
(:mod:`.replica_files`); the processes append to them and they are kept after the replica ends.

- **Tail**: the last ``count`` lines of each file, runtime first, then sidecar. A tail that is
  going to be followed stops at the last complete line, so that the line being written comes out
  whole once its newline arrives.
- **Follow**: every ``FOLLOW_INTERVAL`` the files are checked (size and inode: a file tail, no
  inotify), and each check yields the complete lines appended since (possibly none). A file
  that shrank was truncated and is read again from its start; a file with a new inode was
  rotated (or recreated) and is read from its start; a file that does not exist yet is waited
  for.
- A line longer than ``MAX_LINE_BYTES`` is cut there and marked, so that one runaway line
  neither fills memory nor a response.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ..errors import ReplicaNotFound
from .replica_files import LOG_NAMES, ReplicaPaths

FOLLOW_INTERVAL = 0.25  # seconds between two checks of a followed file
MAX_TAIL_LINES = 10_000
MAX_LINE_BYTES = 16 * 1024
TRUNCATED_MARK = " …[line truncated]"
READ_BLOCK = 64 * 1024
MAX_READ_PER_CHECK = 1024 * 1024  # a check reads at most this much of a file; the rest next time

_REPLICA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class LogProcess(StrEnum):
    RUNTIME = "runtime"
    SIDECAR = "sidecar"
    ALL = "all"

    def roles(self) -> list[str]:
        return list(LOG_NAMES) if self is LogProcess.ALL else [self.value]


@dataclass(frozen=True)
class ReplicaLogLine:
    """One line of a replica's log, as it travels (one NDJSON object per line)."""

    replica_id: str
    process: str
    line: str

    def to_json(self) -> dict[str, str]:
        return {"replica_id": self.replica_id, "process": self.process, "line": self.line}


@dataclass(frozen=True)
class LogFile:
    replica_id: str
    process: str
    path: Path


@dataclass(frozen=True)
class FilePosition:
    """Where following a file continues: the file (inode) and the offset in it."""

    inode: int | None
    offset: int


@dataclass(frozen=True)
class Tail:
    lines: list[ReplicaLogLine]
    positions: list[FilePosition]  # one per file, in the order of the files


def _decode(raw: bytes) -> str:
    cut = len(raw) > MAX_LINE_BYTES
    text = raw[:MAX_LINE_BYTES].decode(errors="replace").removesuffix("\r")
    return text + TRUNCATED_MARK if cut else text


def _tail_of_file(path: Path, count: int, *, complete_only: bool) -> tuple[list[str], FilePosition]:
    """The last ``count`` lines of ``path`` and the position right after them (blocking I/O)."""
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return [], FilePosition(None, 0)
    with file:
        stat = os.fstat(file.fileno())
        end = stat.st_size
        # read backwards block by block until the buffer holds count + 1 newlines (the one
        # before the first wanted line) or the file's start
        needed = count + 1
        buffer = b""
        start = end
        budget = (count + 1) * (MAX_LINE_BYTES + 1)
        while start > 0 and buffer.count(b"\n") < needed and end - start < budget:
            size = min(READ_BLOCK, start)
            start -= size
            file.seek(start)
            buffer = file.read(size) + buffer
    if complete_only:
        last_newline = buffer.rfind(b"\n")
        kept = buffer[: last_newline + 1] if last_newline >= 0 else b""
        if last_newline < 0 and start > 0:
            kept = b""  # no newline within the budget: all of it is one unfinished line
        end = start + len(kept)
        buffer = kept
    raw_lines = buffer.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the text after the final newline
    if start > 0 and raw_lines:
        raw_lines.pop(0)  # begins mid-line
    lines = [_decode(raw) for raw in raw_lines[-count:]] if count else []
    return lines, FilePosition(stat.st_ino, end)


def _read_range(path: Path, offset: int, size: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(size)
    except OSError:  # gone since it was checked: read again at the next check
        return b""


class FollowedFile:
    """One file being followed: turns what is appended into complete lines."""

    def __init__(self, log_file: LogFile, position: FilePosition) -> None:
        self.log_file = log_file
        self._inode = position.inode
        self._offset = position.offset
        self._partial = b""

    def _restart(self, inode: int | None) -> None:
        self._inode = inode
        self._offset = 0
        self._partial = b""

    async def check(self) -> list[ReplicaLogLine]:
        """The lines completed since the last check."""
        try:
            stat = os.stat(self.log_file.path)
        except OSError:  # not there (yet, or any more): nothing new
            return []
        if self._inode is not None and stat.st_ino != self._inode:
            self._restart(stat.st_ino)  # rotated or recreated: the new file from its start
        elif stat.st_size < self._offset:
            self._restart(stat.st_ino)  # truncated
        self._inode = stat.st_ino
        if stat.st_size == self._offset:
            return []
        size = min(stat.st_size - self._offset, MAX_READ_PER_CHECK)
        data = await asyncio.to_thread(_read_range, self.log_file.path, self._offset, size)
        self._offset += len(data)
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        if len(self._partial) > MAX_LINE_BYTES:  # an endless line: out with what there is
            pieces.append(self._partial)
            self._partial = b""
        return [
            ReplicaLogLine(self.log_file.replica_id, self.log_file.process, _decode(raw))
            for raw in pieces
        ]


class ReplicaLogReader:
    """The log files of the replicas under one agent's ``state_dir``."""

    def __init__(self, state_dir: Path, *, follow_interval: float = FOLLOW_INTERVAL) -> None:
        self._state_dir = state_dir
        self._follow_interval = follow_interval

    def files(self, replica_id: str, process: LogProcess) -> list[LogFile]:
        """The files of ``process`` (runtime first), whether they exist yet or not;
        :class:`ReplicaNotFound` when this agent has no folder for the replica."""
        if not _REPLICA_ID.match(replica_id):
            raise ReplicaNotFound(f"replica {replica_id!r} not found on this agent")
        paths = ReplicaPaths.of(self._state_dir, replica_id)
        if not paths.root.is_dir():
            raise ReplicaNotFound(f"replica {replica_id!r} not found on this agent")
        return [LogFile(replica_id, role, paths.log(role)) for role in process.roles()]

    async def tail(self, files: Sequence[LogFile], count: int, *, complete_only: bool) -> Tail:
        """The last ``count`` lines of each file, file after file."""
        lines: list[ReplicaLogLine] = []
        positions: list[FilePosition] = []
        for log_file in files:
            texts, position = await asyncio.to_thread(
                _tail_of_file, log_file.path, count, complete_only=complete_only
            )
            lines += [ReplicaLogLine(log_file.replica_id, log_file.process, t) for t in texts]
            positions.append(position)
        return Tail(lines, positions)

    async def follow(
        self, files: Sequence[LogFile], positions: Sequence[FilePosition]
    ) -> AsyncGenerator[list[ReplicaLogLine], None]:
        """Forever, one batch per check: the lines appended to the files since ``positions``
        (an empty batch when nothing was). The caller stops by leaving the iteration."""
        followed = [FollowedFile(f, p) for f, p in zip(files, positions, strict=True)]
        while True:
            batch: list[ReplicaLogLine] = []
            for one in followed:
                batch += await one.check()
            yield batch
            await asyncio.sleep(self._follow_interval)
