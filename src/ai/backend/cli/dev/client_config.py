"""``client.toml`` (contract: the manager, the gateway, the admin keypair), written by ``dev up``.

A ``client.toml`` already there is replaced only when it is the dev stack's: it holds a dev
keypair this stack recorded, or it points at this stack's manager on this machine. Any other
one (another cluster, the user's own keys) is kept as ``client.toml.bak-<time>`` beside it before
the dev configuration takes its place (so that the CLI talks to the stack just started, never by
surprise to the other cluster); ``dev down --purge`` puts it back. The file is written whole or
not at all, readable only by its owner from the start.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from ai.backend.client.config import client_config_path

from .configs import toml_text
from .errors import DevStackError
from .paths import write_private_file
from .record import StackRecord

LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
BACKUP_SUFFIX: Final = ".bak-"


@dataclass(frozen=True)
class ClientConfigWritten:
    path: Path
    backup: Path | None  # where the configuration that was there before is kept
    previous_endpoint: str | None  # the manager it pointed at, when it was not the stack's


def _same_local_endpoint(written: object, url: str) -> bool:
    if not isinstance(written, str):
        return False
    try:
        found, wanted = urlsplit(written), urlsplit(url)
        return (
            found.scheme == wanted.scheme
            and found.hostname in LOCAL_HOSTS
            and found.port == wanted.port
            and found.path.strip("/") == ""
        )
    except ValueError:
        return False


def belongs_to_stack(text: str, record: StackRecord, dev_access_keys: Collection[str]) -> bool:
    """Whether a ``client.toml`` is the dev stack's: it holds one of ``dev_access_keys``, or it
    points at this stack's manager (and gateway, when it names one) on this machine."""
    try:
        client = tomllib.loads(text).get("client")
    except tomllib.TOMLDecodeError:
        return False
    if not isinstance(client, dict):
        return False
    if client.get("access_key") in dev_access_keys:
        return True
    manager, gateway = record.services["manager"].url, record.services["gateway"].url
    return _same_local_endpoint(client.get("endpoint"), manager) and (
        "gateway_endpoint" not in client
        or _same_local_endpoint(client.get("gateway_endpoint"), gateway)
    )


def _keep_aside(path: Path) -> Path:
    """Keep ``path`` as ``<name>.bak-<time>`` beside it (a hard link, so that ``path`` is never
    missing; a copy where links cannot be made)."""
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    for attempt in range(100):
        backup = path.with_name(
            f"{path.name}{BACKUP_SUFFIX}{stamp}" + (f"-{attempt}" * bool(attempt))
        )
        try:
            os.link(path, backup)
            return backup
        except FileExistsError:
            continue
        except OSError:
            try:
                fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as file:
                file.write(path.read_bytes())
            return backup
    raise DevStackError(f"could not keep {path} aside: too many backups beside it")


def write_client_config(
    record: StackRecord, dev_access_keys: Collection[str]
) -> ClientConfigWritten:
    """Write the dev stack's ``client.toml`` (``dev_access_keys``: the dev keypairs recorded
    before and now)."""
    path = client_config_path()
    admin = record.keypairs["admin"]
    document = {
        "client": {
            "endpoint": record.services["manager"].url,
            "gateway_endpoint": record.services["gateway"].url,
            "access_key": admin.access_key,
            "secret_key": admin.secret_key,
        }
    }
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    backup = previous_endpoint = None
    try:
        existing = path.read_text()
    except FileNotFoundError:
        existing = None
    except OSError as e:
        raise DevStackError(f"cannot read the client configuration {path}: {e}") from None
    if existing is not None and not belongs_to_stack(existing, record, dev_access_keys):
        backup = _keep_aside(path)
        with contextlib.suppress(tomllib.TOMLDecodeError, AttributeError):
            endpoint = tomllib.loads(existing).get("client", {}).get("endpoint")
            previous_endpoint = endpoint if isinstance(endpoint, str) else None
    write_private_file(path, toml_text(document))
    return ClientConfigWritten(path, backup, previous_endpoint)


def restore_client_config(record: StackRecord) -> tuple[bool, Path | None]:
    """For ``dev down --purge``: delete ``client.toml`` when it holds the stack's admin keypair,
    and put back the one ``dev up`` kept aside. Whether it was deleted, and what was put back."""
    admin = record.keypairs.get("admin")
    path = client_config_path()
    if admin is None or not path.is_file():
        return False, None
    try:
        written = tomllib.loads(path.read_text()).get("client", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False, None
    if not isinstance(written, dict) or written.get("access_key") != admin.access_key:
        return False, None
    path.unlink()
    backup = record.client_config_backup
    kept_here = backup is not None and backup.parent == path.parent
    if backup is not None and kept_here and backup.is_file():
        os.replace(backup, path)
        return True, backup
    return True, None
