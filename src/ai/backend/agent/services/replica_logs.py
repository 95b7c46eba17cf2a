"""A replica's log files as lines: the last N of each, then (when followed) what is appended.

The files are ``runtime.log`` and ``sidecar.log`` under ``{state_dir}/replicas/{replica_id}/``
(:mod:`.replica_files`); the processes append to them and they are kept after the replica ends.

- **Tail**: the last ``count`` lines of each file, runtime first, then sidecar, read from at
  most the last ``MAX_TAIL_BYTES`` (4 MiB) of each file. Older lines are not returned, so a tail
  may hold fewer than ``count`` lines; a wanted line that begins before those bytes comes out as
  the part that was read, marked like a cut line (``TRUNCATED_MARK``). A tail that is going to
  be followed stops at the last complete line, so that the line being written comes out whole
  once its newline arrives.
- **Follow**: every ``FOLLOW_INTERVAL`` the files are checked (size and inode: a file tail, no
  inotify), and each check yields the complete lines appended since (possibly none). A file
  that shrank was truncated and is read again from its start; a file with a new inode was
  rotated (or recreated) and is read from its start; a file that does not exist yet is waited
  for.
- A line longer than ``MAX_LINE_BYTES`` is cut there and marked, so that one runaway line
  neither fills memory nor a response.
- File reads run on the reader's own small thread pool (``READ_WORKERS`` threads), not on the
  event loop's default executor, which the agent needs for starting replicas; :meth:`close`
  shuts it down.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, TypeVar

from ai.backend.common.dto.manager_api import LogLine

from ..errors import ReplicaNotFound
from .replica_files import LOG_NAMES, ReplicaPaths

FOLLOW_INTERVAL = 0.25  # seconds between two checks of a followed file
MAX_TAIL_LINES = 10_000
MAX_LINE_BYTES = 16 * 1024
TRUNCATED_MARK = " …[line truncated]"
READ_BLOCK = 64 * 1024
MAX_READ_PER_CHECK = 1024 * 1024  # a check reads at most this much of a file; the rest next time
MAX_TAIL_BYTES = 4 * 1024 * 1024  # a tail reads at most this much of the end of each file
READ_WORKERS = 2  # threads reading log files, shared by every request of this agent

_REPLICA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

T = TypeVar("T")


class LogProcess(StrEnum):
    RUNTIME = "runtime"
    SIDECAR = "sidecar"
    ALL = "all"

    def roles(self) -> list[str]:
        return list(LOG_NAMES) if self is LogProcess.ALL else [self.value]


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
    lines: list[LogLine]
    positions: list[FilePosition]  # one per file, in the order of the files


def _decode(raw: bytes, *, cut: bool = False) -> str:
    """A line as text; cut at ``MAX_LINE_BYTES`` (or already ``cut``) and then marked."""
    cut = cut or len(raw) > MAX_LINE_BYTES
    text = raw[:MAX_LINE_BYTES].decode(errors="replace").removesuffix("\r")
    return text + TRUNCATED_MARK if cut else text


def _tail_budget(count: int) -> int:
    """How many bytes from a file's end a tail of ``count`` lines reads at most: enough for
    ``count`` lines of ``MAX_LINE_BYTES`` (longer ones are cut anyway), up to ``MAX_TAIL_BYTES``."""
    return min((count + 1) * (MAX_LINE_BYTES + 1), MAX_TAIL_BYTES)


def _read_backwards(file: BinaryIO, end: int, count: int) -> tuple[bytes, int]:
    """The bytes before ``end`` holding the last ``count`` lines (and the newline before the
    first of them), up to :func:`_tail_budget` of them plus the one byte before (which tells
    whether the first line read begins inside the budget); and the offset they start at."""
    floor = max(0, end - _tail_budget(count) - 1)
    blocks: list[bytes] = []
    newlines = 0
    start = end
    while start > floor and newlines <= count:
        size = min(READ_BLOCK, start - floor)
        start -= size
        file.seek(start)
        block = file.read(size)
        blocks.append(block)
        newlines += block.count(b"\n")
    return b"".join(reversed(blocks)), start


def _tail_of_file(path: Path, count: int, *, complete_only: bool) -> tuple[list[str], FilePosition]:
    """The last ``count`` lines of ``path`` and the position right after them (blocking I/O)."""
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return [], FilePosition(None, 0)
    with file:
        stat = os.fstat(file.fileno())
        buffer, start = _read_backwards(file, stat.st_size, count)
    end = stat.st_size
    if complete_only:
        buffer = buffer[: buffer.rfind(b"\n") + 1]  # nothing when no line is complete
        end = start + len(buffer)
    raw_lines = buffer.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the (empty) text after the final newline
    # the first piece begins mid-line when the read began after the file's start: it is the end
    # of the line before the wanted ones, or (when the budget ran out first) a wanted line whose
    # beginning was not read
    first_piece = raw_lines.pop(0) if start > 0 and raw_lines else b""
    if not count:
        return [], FilePosition(stat.st_ino, end)
    lines = [_decode(raw) for raw in raw_lines[-count:]]
    if first_piece and len(lines) < count:
        lines.insert(0, _decode(first_piece, cut=True))
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

    def __init__(
        self, log_file: LogFile, position: FilePosition, *, executor: ThreadPoolExecutor
    ) -> None:
        self.log_file = log_file
        self._executor = executor
        self._inode = position.inode
        self._offset = position.offset
        self._partial = b""

    def _restart(self, inode: int | None) -> None:
        self._inode = inode
        self._offset = 0
        self._partial = b""

    async def check(self) -> list[LogLine]:
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
        data = await asyncio.get_running_loop().run_in_executor(
            self._executor, _read_range, self.log_file.path, self._offset, size
        )
        self._offset += len(data)
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        if len(self._partial) > MAX_LINE_BYTES:  # an endless line: out with what there is
            pieces.append(self._partial)
            self._partial = b""
        return [
            LogLine(
                replica_id=self.log_file.replica_id,
                process=self.log_file.process,
                line=_decode(raw),
            )
            for raw in pieces
        ]


class ReplicaLogReader:
    """The log files of the replicas under one agent's ``state_dir``."""

    def __init__(self, state_dir: Path, *, follow_interval: float = FOLLOW_INTERVAL) -> None:
        self._state_dir = state_dir
        self._follow_interval = follow_interval
        self._executor = ThreadPoolExecutor(READ_WORKERS, thread_name_prefix="replica-logs")

    async def _in_thread(self, read: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, read)

    def close(self) -> None:
        """Stop the reading threads; reads already queued are dropped (their requests fail)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def files(self, replica_id: str, process: LogProcess) -> list[LogFile]:
        """The files of ``process`` (runtime first), whether they exist yet or not;
        :class:`ReplicaNotFound` when this agent has no folder for the replica."""
        if not _REPLICA_ID.fullmatch(replica_id):
            raise ReplicaNotFound(f"replica {replica_id!r} not found on this agent")
        paths = ReplicaPaths.of(self._state_dir, replica_id)
        if not paths.root.is_dir():
            raise ReplicaNotFound(f"replica {replica_id!r} not found on this agent")
        return [LogFile(replica_id, role, paths.log(role)) for role in process.roles()]

    async def tail(self, files: Sequence[LogFile], count: int, *, complete_only: bool) -> Tail:
        """The last ``count`` lines of each file, file after file."""
        lines: list[LogLine] = []
        positions: list[FilePosition] = []
        for log_file in files:
            texts, position = await self._in_thread(
                functools.partial(_tail_of_file, log_file.path, count, complete_only=complete_only)
            )
            lines += [
                LogLine(replica_id=log_file.replica_id, process=log_file.process, line=t)
                for t in texts
            ]
            positions.append(position)
        return Tail(lines, positions)

    async def follow(
        self, files: Sequence[LogFile], positions: Sequence[FilePosition]
    ) -> AsyncGenerator[list[LogLine], None]:
        """Forever, one batch per check: the lines appended to the files since ``positions``
        (an empty batch when nothing was). The caller stops by leaving the iteration."""
        followed = [
            FollowedFile(f, p, executor=self._executor)
            for f, p in zip(files, positions, strict=True)
        ]
        while True:
            batch: list[LogLine] = []
            for one in followed:
                batch += await one.check()
            yield batch
            await asyncio.sleep(self._follow_interval)
