"""``dev logs``: the tail of each service's log, or of one; ``--follow`` keeps printing what
they append (polling the files, as ``tail -f`` does)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click

from .paths import DevPaths
from .record import StackRecord

FOLLOW_INTERVAL: Final = 0.25


def log_files(record: StackRecord | None, paths: DevPaths) -> dict[str, Path]:
    """Every log of the stack by service name: the recorded ones, then any other file in
    ``logs/`` (a service of an earlier run)."""
    files: dict[str, Path] = {}
    if record is not None:
        for data in (record.db, record.redis):
            if data is not None and data.embedded and data.log is not None:
                files[data.name] = data.log
        for service in record.services.values():
            files[service.name] = service.log
    for path in sorted(paths.logs_dir.glob("*.log")):
        files.setdefault(path.stem, path)
    return files


def last_lines(path: Path, count: int) -> list[str]:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            chunk = max(count * 400, 64 * 1024)
            file.seek(max(size - chunk, 0))
            text = file.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-count:] if count else []


def print_tails(files: Mapping[str, Path], count: int) -> None:
    single = len(files) == 1
    for name, path in files.items():
        if not single:
            click.echo(f"==> {name} ({path}) <==")
        for line in last_lines(path, count):
            click.echo(line)
        if not single:
            click.echo()


@dataclass
class FollowedFile:
    name: str
    path: Path
    offset: int
    pending: bytes = b""

    def read_new_lines(self) -> list[str]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:  # truncated or replaced: start over
            self.offset = 0
        if size == self.offset:
            return []
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            data = self.pending + file.read()
            self.offset = file.tell()
        *complete, self.pending = data.split(b"\n")
        return [line.decode(errors="replace") for line in complete]


def follow(files: Mapping[str, Path], count: int) -> None:
    """Print the last ``count`` lines of each file, then every new line, prefixed with its
    service when there are several, until interrupted."""
    prefix = len(files) > 1
    followed = []
    for name, path in files.items():
        for line in last_lines(path, count):
            click.echo(f"[{name}] {line}" if prefix else line)
        size = path.stat().st_size if path.exists() else 0
        followed.append(FollowedFile(name, path, size))
    try:
        while True:
            for item in followed:
                for line in item.read_new_lines():
                    click.echo(f"[{item.name}] {line}" if prefix else line)
            time.sleep(FOLLOW_INTERVAL)  # polling the files for growth, like tail -f
    except KeyboardInterrupt:
        return
